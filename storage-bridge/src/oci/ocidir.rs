//! Writing an OCI image layout directory through a directory handle.
//!
//! Every blob is written under a temporary name and renamed to its digest only once the digest
//! is known; `index.json` is replaced atomically at the very end, so a failed export never
//! leaves a readable half-image. Blobs this writer added are removed again by [`OciDir::abort`].

use super::layer::{LayerBlob, LayerWriter};
use super::BlobRef;
use crate::compression::Compression;
use crate::labels::{media, OCI_REF_NAME};
use anyhow::{bail, Context, Result};
use cap_std::fs::{Dir, File, OpenOptions};
use sha2::{Digest, Sha256};
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const BLOBS: &str = "blobs/sha256";
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An OCI layout directory being written.
pub struct OciDir {
    dir: Dir,
    /// Blobs this writer created (removed on abort).
    added: Mutex<Vec<String>>,
}

fn tmp_name() -> String {
    format!(
        ".tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl OciDir {
    /// Use `dir` as an OCI layout, creating `oci-layout` and `blobs/sha256` when missing.
    pub fn ensure(dir: Dir) -> Result<Self> {
        dir.create_dir_all(BLOBS).context("creating blobs/sha256")?;
        if !dir.try_exists("oci-layout")? {
            write_atomic(&dir, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(OciDir {
            dir,
            added: Mutex::new(Vec::new()),
        })
    }

    /// Open an existing layout for reading, writing nothing.
    pub fn open_existing(dir: Dir) -> Result<Self> {
        if !dir.try_exists("index.json")? {
            bail!("not an OCI image layout (no index.json)");
        }
        Ok(OciDir {
            dir,
            added: Mutex::new(Vec::new()),
        })
    }

    fn blob_name(digest: &str) -> Result<String> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .with_context(|| format!("invalid digest {digest:?}"))?;
        Ok(format!("{BLOBS}/{hex}"))
    }

    /// Whether the blob exists.
    pub fn has_blob(&self, digest: &str) -> Result<bool> {
        Ok(self.dir.try_exists(Self::blob_name(digest)?)?)
    }

    fn publish(&self, tmp: &str, digest: &str) -> Result<()> {
        let name = Self::blob_name(digest)?;
        if self.dir.try_exists(&name)? {
            // Same content already there (content addressed): keep the old one.
            self.dir.remove_file(tmp).ok();
            return Ok(());
        }
        self.dir
            .rename(tmp, &self.dir, &name)
            .with_context(|| format!("publishing blob {digest}"))?;
        self.added
            .lock()
            .map_err(|_| anyhow::anyhow!("blob list poisoned"))?
            .push(name);
        Ok(())
    }

    /// Write a small blob (JSON documents).
    pub fn write_blob(&self, data: &[u8]) -> Result<BlobRef> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
        let tmp = format!("{BLOBS}/{}", tmp_name());
        let r = (|| -> Result<()> {
            let mut f = self.dir.create(&tmp)?;
            f.write_all(data)?;
            Ok(())
        })();
        if let Err(e) = r {
            self.dir.remove_file(&tmp).ok();
            return Err(e.context(format!("writing blob {digest}")));
        }
        self.publish(&tmp, &digest)?;
        Ok(BlobRef {
            digest,
            size: data.len() as u64,
        })
    }

    /// Stream a layer: `fill` writes the tar into the given writer.
    pub fn write_layer(
        &self,
        compression: Compression,
        on_bytes: &(dyn Fn(u64) + Sync),
        fill: impl FnOnce(&mut LayerWriter<'_, BufWriter<File>>) -> Result<()>,
    ) -> Result<LayerBlob> {
        let tmp = format!("{BLOBS}/{}", tmp_name());
        let r = (|| -> Result<LayerBlob> {
            let f = self
                .dir
                .open_with(&tmp, OpenOptions::new().write(true).create_new(true))
                .context("creating layer blob")?;
            let mut w =
                LayerWriter::new(compression, BufWriter::with_capacity(1 << 17, f), on_bytes)?;
            fill(&mut w)?;
            let (out, blob) = w.finish().context("finishing layer blob")?;
            out.into_inner().map_err(|e| e.into_error())?;
            Ok(blob)
        })();
        match r {
            Ok(blob) => {
                self.publish(&tmp, &blob.blob.digest)?;
                Ok(blob)
            }
            Err(e) => {
                self.dir.remove_file(&tmp).ok();
                Err(e)
            }
        }
    }

    /// Record `manifest` in `index.json`: under `tag` (replacing that tag, keeping the other
    /// entries), or as the only manifest when there is no tag.
    pub fn set_manifest(&self, manifest: &BlobRef, tag: Option<&str>) -> Result<()> {
        let mut desc = serde_json::json!({
            "mediaType": media::MANIFEST,
            "digest": manifest.digest,
            "size": manifest.size,
        });
        if let Some(t) = tag {
            desc["annotations"] = serde_json::json!({ OCI_REF_NAME: t });
        }
        let mut manifests = Vec::new();
        if let Some(t) = tag {
            if let Some(old) = self.read_index()? {
                if let Some(list) = old.get("manifests").and_then(|m| m.as_array()) {
                    manifests.extend(
                        list.iter()
                            .filter(|m| {
                                m.pointer(&format!(
                                    "/annotations/{}",
                                    OCI_REF_NAME.replace('/', "~1")
                                ))
                                .and_then(|v| v.as_str())
                                    != Some(t)
                            })
                            .cloned(),
                    );
                }
            }
        }
        manifests.push(desc);
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::INDEX,
            "manifests": manifests,
        });
        write_atomic(&self.dir, "index.json", &serde_json::to_vec(&index)?)
    }

    fn read_index(&self) -> Result<Option<serde_json::Value>> {
        if !self.dir.try_exists("index.json")? {
            return Ok(None);
        }
        let data = self.dir.read("index.json").context("reading index.json")?;
        let v: serde_json::Value =
            serde_json::from_slice(&data).context("parsing existing index.json")?;
        if !v.is_object() {
            bail!("existing index.json is not a JSON object");
        }
        Ok(Some(v))
    }

    /// Read a blob whole (small documents only).
    pub fn read_blob(&self, digest: &str, limit: u64) -> Result<Vec<u8>> {
        let name = Self::blob_name(digest)?;
        let size = self.dir.metadata(&name)?.len();
        if size > limit {
            bail!("blob {digest} is {size} bytes, over the {limit} byte limit");
        }
        let data = self.dir.read(&name)?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        if actual != digest {
            bail!("blob {digest} has digest {actual}");
        }
        Ok(data)
    }

    /// Open a blob for streaming (verify it with `blob_read::VerifiedLayer`).
    pub fn open_blob(&self, digest: &str) -> Result<File> {
        let name = Self::blob_name(digest)?;
        self.dir
            .open(&name)
            .with_context(|| format!("opening blob {digest}"))
    }

    /// The manifest descriptor for `tag`, or the only one when `tag` is None.
    pub fn find_manifest(&self, tag: Option<&str>) -> Result<BlobRef> {
        let index = self
            .read_index()?
            .context("no index.json: not an OCI image layout")?;
        let list = index
            .get("manifests")
            .and_then(|m| m.as_array())
            .context("index.json has no manifests")?;
        let pick: Vec<&serde_json::Value> = list
            .iter()
            .filter(|m| match tag {
                None => true,
                Some(t) => {
                    m.get("annotations")
                        .and_then(|a| a.get(OCI_REF_NAME))
                        .and_then(|v| v.as_str())
                        == Some(t)
                }
            })
            .collect();
        let m = match (pick.as_slice(), tag) {
            ([m], _) => *m,
            ([], Some(t)) => bail!("no manifest tagged {t:?} in index.json"),
            ([], None) => bail!("index.json lists no manifest"),
            (_, _) => bail!("index.json lists several manifests; name one with :TAG"),
        };
        Ok(BlobRef {
            digest: m
                .get("digest")
                .and_then(|d| d.as_str())
                .context("manifest descriptor without digest")?
                .to_string(),
            size: m.get("size").and_then(|s| s.as_u64()).unwrap_or(0),
        })
    }

    /// Remove the blobs this writer added (after a failure).
    pub fn abort(&self) {
        if let Ok(list) = self.added.lock() {
            for b in list.iter() {
                self.dir.remove_file(b).ok();
            }
        }
    }

    /// The directory handle.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }
}

/// Write `name` in `dir` through a temporary file and a rename.
pub fn write_atomic(dir: &Dir, name: &str, data: &[u8]) -> Result<()> {
    let tmp = tmp_name();
    let r = (|| -> Result<()> {
        let mut f = dir.create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        dir.rename(&tmp, dir, name)?;
        Ok(())
    })();
    if r.is_err() {
        dir.remove_file(&tmp).ok();
    }
    r.with_context(|| format!("writing {name}"))
}
