//! Opening an image for reading: an `oci:` layout in place, any other transport staged into a
//! temporary layout by `skopeo copy`; then its manifest, config and ostree layout.

use crate::imgref::{ImageReference, Transport};
use crate::labels::{FINAL_DIFFID, OSTREE_COMMIT};
use crate::oci::ocidir::OciDir;
use crate::transport::{self, SkopeoOptions};
use anyhow::{anyhow, bail, Context, Result};
use cap_std::fs::Dir;
use serde_json::Value;
use std::path::Path;

/// Largest manifest or config read.
const MAX_DOC: u64 = 4 << 20;

/// An image opened as an OCI layout, with its documents read and verified.
pub struct Source {
    pub oci: OciDir,
    pub manifest_digest: String,
    pub manifest: Value,
    pub config: Value,
    _staged: Option<tempfile::TempDir>,
}

impl Source {
    pub fn open(r: &ImageReference, opts: &SkopeoOptions) -> Result<Self> {
        // The digest the source itself gives its manifest (what `upgrade` compares later);
        // for oci: layouts, the index's.
        let mut source_digest = None;
        let mut preserved = false;
        let (oci, tag, staged) = if r.transport == Transport::OciDir && !opts.enforce_policy {
            let (p, tag) = r.path_and_tag();
            if !Path::new(p).join("index.json").is_file() {
                bail!("{r}: no OCI image layout at {p} (no index.json)");
            }
            let dir = Dir::open_ambient_dir(p, cap_std::ambient_authority())
                .with_context(|| format!("opening {p}"))?;
            (OciDir::open_existing(dir)?, tag.map(str::to_string), None)
        } else {
            let raw = transport::read_manifest_bytes(r, opts)?;
            source_digest = Some(format!(
                "sha256:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&raw))
            ));
            let tmp = tempfile::Builder::new()
                .prefix("ostree-container-src-")
                .tempdir()?;
            preserved = transport::skopeo_copy_to_oci(&r.to_string(), tmp.path(), opts)?;
            let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority())?;
            (OciDir::open_existing(dir)?, None, Some(tmp))
        };
        let mdesc = oci.find_manifest(tag.as_deref())?;
        let manifest: Value = serde_json::from_slice(&oci.read_blob(&mdesc.digest, MAX_DOC)?)
            .context("parsing the manifest")?;
        let cdigest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| anyhow!("the manifest names no config"))?;
        let config: Value = serde_json::from_slice(&oci.read_blob(cdigest, MAX_DOC)?)
            .context("parsing the config")?;
        Ok(Source {
            oci,
            manifest_digest: match source_digest {
                // The copy kept the manifest: it must be the one inspected a moment before.
                Some(d) if preserved && d != mdesc.digest => bail!(
                    "{r} changed while it was read (manifest {d}, then {}); try again",
                    mdesc.digest
                ),
                Some(d) => d,
                None => mdesc.digest,
            },
            manifest,
            config,
            _staged: staged,
        })
    }

    pub fn layers(&self) -> &[Value] {
        self.manifest["layers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn diff_ids(&self) -> &[Value] {
        self.config["rootfs"]["diff_ids"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The commit the image encapsulates, when it is an ostree image.
    pub fn ostree_commit(&self) -> Option<&str> {
        self.config["config"]["Labels"][OSTREE_COMMIT].as_str()
    }

    /// How many leading layers are ostree layers (0 for a plain OCI image).
    pub fn ostree_layer_count(&self, imgref: &str) -> Result<usize> {
        let layers = self.manifest["layers"]
            .as_array()
            .ok_or_else(|| anyhow!("{imgref}: the manifest has no layers"))?;
        let diff_ids = self.config["rootfs"]["diff_ids"]
            .as_array()
            .ok_or_else(|| anyhow!("{imgref}: the config has no rootfs.diff_ids"))?;
        if layers.len() != diff_ids.len() {
            bail!(
                "{imgref}: the manifest lists {} layers but the config {} diff_ids",
                layers.len(),
                diff_ids.len()
            );
        }
        if self.ostree_commit().is_none() {
            return Ok(0);
        }
        if layers.is_empty() {
            bail!("{imgref}: the image has no layers");
        }
        match self.config["config"]["Labels"][FINAL_DIFFID].as_str() {
            Some(d) => diff_ids
                .iter()
                .position(|x| x.as_str() == Some(d))
                .map(|i| i + 1)
                .ok_or_else(|| anyhow!("{imgref}: {FINAL_DIFFID} {d} is not among the config's diff_ids")),
            // Old single-layer images carry no final-diffid label.
            None if layers.len() == 1 => Ok(1),
            None => bail!("{imgref}: several layers but no {FINAL_DIFFID} label: cannot tell the ostree layers apart"),
        }
    }

    /// Layer `i`'s blob digest and diff_id, as the manifest and config name them.
    pub fn layer_ids(&self, i: usize) -> Result<(&str, &str)> {
        let digest = self.layers().get(i).and_then(|l| l["digest"].as_str());
        let diff_id = self.diff_ids().get(i).and_then(|d| d.as_str());
        match (digest, diff_id) {
            (Some(d), Some(id)) => Ok((d, id)),
            (None, _) => bail!("layer {i} of the manifest has no digest"),
            (_, None) => bail!("the config has no diff_id string for layer {i}"),
        }
    }

    /// Which of the first `n` (ostree) layers the layer cache already holds as object sets
    /// (never layer 0, the commit layer).
    pub fn cached_chunks(&self, repo: &ostree::Repo, n: usize) -> Result<Vec<bool>> {
        (0..n)
            .map(|i| {
                if i == 0 {
                    return Ok(false);
                }
                let (digest, diff_id) = self.layer_ids(i)?;
                Ok(crate::layer_cache::lookup(
                    repo,
                    diff_id,
                    digest,
                    crate::layer_cache::LayerKind::Objects,
                )?
                .is_some())
            })
            .collect()
    }

    /// Import the first `n` (ostree) layers into `repo`'s open transaction, check the commit
    /// against the `ostree.commit` label and for completeness; the commit and per-layer stats.
    /// Chunk layers `i` with `cached[i]` are not read: the layer cache holds their objects.
    /// Every layer read is recorded in the layer cache (refs set in the transaction, after its
    /// digests were verified).
    pub fn import_ostree_layers(
        &self,
        repo: &ostree::Repo,
        n: usize,
        cached: &[bool],
        progress: &dyn crate::progress::Progress,
    ) -> Result<(String, Vec<crate::tar::tar_to_commit::LayerStats>)> {
        use crate::layer_cache;
        use crate::tar::tar_to_commit::{LayerRole, LayerStats, ObjectImporter};
        let mut imp = ObjectImporter::new(repo);
        let r = (|| -> Result<Vec<LayerStats>> {
            let mut stats = Vec::new();
            for (i, l) in self.layers().iter().enumerate().take(n) {
                let (digest, diff_id) = self.layer_ids(i)?;
                let desc = format!("layer {i} ({digest})");
                if i > 0 && cached.get(i).copied().unwrap_or(false) {
                    stats.push(LayerStats {
                        cached: true,
                        ..Default::default()
                    });
                    continue;
                }
                progress.layer_start(i, &desc, l["size"].as_u64().unwrap_or(0));
                let mut v = self
                    .layer(i, super::unencapsulate::MAX_LAYER_UNCOMPRESSED)
                    .with_context(|| desc.clone())?;
                let role = if i == 0 {
                    LayerRole::Commit
                } else {
                    LayerRole::Chunk
                };
                let mut st = imp.import_layer(
                    crate::progress::ReadProgress::new(&mut v, i, progress),
                    role,
                    &desc,
                )?;
                v.finish().with_context(|| desc.clone())?;
                if role == LayerRole::Chunk {
                    let c = layer_cache::write_objects(repo, &st.objects, diff_id)
                        .with_context(|| format!("{desc}: recording it in the layer cache"))?;
                    layer_cache::set_refs(repo, diff_id, digest, &c);
                }
                st.objects = Vec::new();
                stats.push(st);
                progress.layer_done(i);
            }
            let want = self.ostree_commit().unwrap_or_default();
            let got = imp.commit().unwrap_or_default();
            if got != want {
                bail!(
                    "the image's {OSTREE_COMMIT} label says {want}, its commit layer holds {got}"
                );
            }
            Ok(stats)
        })();
        match r {
            Ok(stats) => {
                let commit = imp.finish()?;
                let (digest, diff_id) = self.layer_ids(0)?;
                layer_cache::set_refs(repo, diff_id, digest, &commit);
                Ok((commit, stats))
            }
            Err(e) => {
                imp.abandon();
                Err(e)
            }
        }
    }

    /// Layer `i` as a verified tar stream. The blob's digest and size are checked before a
    /// byte of it is parsed (it is a local file), and again, with the diff_id, at `finish`.
    pub fn layer(
        &self,
        i: usize,
        max_uncompressed: u64,
    ) -> Result<crate::oci::blob_read::VerifiedLayer<cap_std::fs::File>> {
        let l = &self.layers()[i];
        let digest = l["digest"]
            .as_str()
            .ok_or_else(|| anyhow!("layer {i} has no digest"))?;
        let size = l["size"]
            .as_u64()
            .ok_or_else(|| anyhow!("layer {i} has no size"))?;
        let mt = l["mediaType"].as_str().unwrap_or_default();
        let diff_id = match self.diff_ids().get(i) {
            Some(d) => Some(
                d.as_str()
                    .ok_or_else(|| anyhow!("diff_id {i} of the config is not a string"))?,
            ),
            None => bail!("the config has no diff_id for layer {i}"),
        };
        let mut pre =
            crate::oci::blob_read::HashingReader::new(self.oci.open_blob(digest)?, Some(size));
        let (got, n) = pre.finish_digest()?;
        if n != size {
            bail!("blob {digest} is {n} bytes, the manifest says {size}");
        }
        if got != digest {
            bail!("blob {digest} has digest {got}");
        }
        let f = self.oci.open_blob(digest)?;
        crate::oci::blob_read::VerifiedLayer::new(f, mt, digest, size, diff_id, max_uncompressed)
    }
}
