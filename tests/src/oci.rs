//! Reading OCI layouts in tests: index, manifest, config, and the entries of each layer.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// An OCI image layout on disk.
pub struct Layout {
    pub dir: PathBuf,
}

/// One tar entry, as the tests compare them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    pub path: String,
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub link: Option<String>,
    pub content_sha256: Option<String>,
}

impl Layout {
    pub fn open(dir: &Path) -> Self {
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// Read a blob and check its digest.
    pub fn blob(&self, digest: &str) -> Result<Vec<u8>> {
        let data =
            std::fs::read(self.blob_path(digest)).with_context(|| format!("blob {digest}"))?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        if actual != digest {
            bail!("blob {digest} hashes to {actual}");
        }
        Ok(data)
    }

    pub fn index(&self) -> Result<Value> {
        Ok(serde_json::from_slice(&std::fs::read(
            self.dir.join("index.json"),
        )?)?)
    }

    /// The manifest digest for `tag` (or the only one).
    pub fn manifest_digest(&self, tag: Option<&str>) -> Result<String> {
        let idx = self.index()?;
        let list = idx["manifests"].as_array().context("manifests")?;
        let m = list
            .iter()
            .find(|m| match tag {
                None => true,
                Some(t) => m["annotations"]["org.opencontainers.image.ref.name"] == t,
            })
            .context("manifest not found")?;
        Ok(m["digest"].as_str().context("digest")?.to_string())
    }

    pub fn manifest(&self, tag: Option<&str>) -> Result<Value> {
        Ok(serde_json::from_slice(
            &self.blob(&self.manifest_digest(tag)?)?,
        )?)
    }

    pub fn config(&self, manifest: &Value) -> Result<Value> {
        let d = manifest["config"]["digest"]
            .as_str()
            .context("config digest")?;
        Ok(serde_json::from_slice(&self.blob(d)?)?)
    }

    /// Decompressed tar of a layer, checked against its diff_id when given.
    pub fn layer_tar(&self, layer: &Value, diff_id: Option<&str>) -> Result<Vec<u8>> {
        let d = layer["digest"].as_str().context("layer digest")?;
        let blob = self.blob(d)?;
        let mt = layer["mediaType"].as_str().unwrap_or("");
        let tar = decompress(mt, &blob)?;
        if let Some(want) = diff_id {
            let got = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
            if got != want {
                bail!("layer {d}: diff_id {got} != config's {want}");
            }
        }
        Ok(tar)
    }
}

pub fn decompress(media_type: &str, blob: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip") {
        flate2::read::MultiGzDecoder::new(blob).read_to_end(&mut out)?;
    } else if media_type.ends_with("+zstd") {
        zstd::stream::read::Decoder::new(blob)?.read_to_end(&mut out)?;
    } else {
        out = blob.to_vec();
    }
    Ok(out)
}

/// Every entry of a tar stream.
pub fn tar_entries(tar: &[u8]) -> Result<Vec<TarEntry>> {
    let mut ar = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in ar.entries()? {
        let mut e = e?;
        let h = e.header().clone();
        let path = String::from_utf8_lossy(&e.path_bytes()).to_string();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).to_string());
        let kind = h.entry_type().as_byte();
        let content_sha256 = if kind == b'0' {
            let mut buf = Vec::new();
            e.read_to_end(&mut buf)?;
            Some(hex::encode(Sha256::digest(&buf)))
        } else {
            None
        };
        out.push(TarEntry {
            path,
            kind,
            mode: h.mode()?,
            uid: h.uid()?,
            gid: h.gid()?,
            size: h.size()?,
            link,
            content_sha256,
        });
    }
    Ok(out)
}

/// Write a plain (non-ostree) OCI image of these uncompressed layer tars into `dir`.
pub fn write_plain_image(dir: &Path, layers: &[Vec<u8>]) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |data: &[u8]| -> Result<(String, usize)> {
        let d = hex::encode(Sha256::digest(data));
        std::fs::write(blobs.join(&d), data)?;
        Ok((format!("sha256:{d}"), data.len()))
    };
    let mut descs = Vec::new();
    let mut diffs = Vec::new();
    for l in layers {
        let (d, s) = put(l)?;
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s}));
        diffs.push(d);
    }
    let cfg = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diffs}});
    let (cd, cs) = put(cfg.to_string().as_bytes())?;
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs}, "layers": descs});
    let (md, ms) = put(m.to_string().as_bytes())?;
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms}]});
    std::fs::write(dir.join("index.json"), index.to_string())?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(())
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub const MT_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// A layer to write: the blob as stored, its media type, and the diff_id the config records.
#[derive(Debug, Clone)]
pub struct RawLayer {
    pub blob: Vec<u8>,
    pub media_type: String,
    pub diff_id: String,
}

impl RawLayer {
    /// An uncompressed layer.
    pub fn tar(tar: Vec<u8>) -> Self {
        RawLayer {
            diff_id: sha256_digest(&tar),
            blob: tar,
            media_type: MT_TAR.into(),
        }
    }

    /// A gzip layer (one member).
    pub fn gzip(tar: &[u8]) -> Self {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(tar).expect("gzip to memory");
        RawLayer {
            blob: e.finish().expect("gzip to memory"),
            media_type: MT_GZIP.into(),
            diff_id: sha256_digest(tar),
        }
    }

    /// A zstd layer.
    pub fn zstd(tar: &[u8]) -> Self {
        RawLayer {
            blob: zstd::encode_all(tar, 3).expect("zstd to memory"),
            media_type: MT_ZSTD.into(),
            diff_id: sha256_digest(tar),
        }
    }

    /// Any blob under any media type, recording `diff_id`.
    pub fn raw(blob: Vec<u8>, media_type: &str, diff_id: &str) -> Self {
        RawLayer {
            blob,
            media_type: media_type.into(),
            diff_id: diff_id.into(),
        }
    }
}

/// Writes blobs and `index.json` of an OCI layout, whatever they hold.
pub struct OciWriter {
    pub dir: PathBuf,
}

impl OciWriter {
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("blobs/sha256"))?;
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(OciWriter {
            dir: dir.to_path_buf(),
        })
    }

    /// Store `data` under its digest; its descriptor (`digest`, `size`).
    pub fn put(&self, data: &[u8]) -> Result<Value> {
        let d = sha256_digest(data);
        self.put_as(&d, data)?;
        Ok(serde_json::json!({"digest": d, "size": data.len()}))
    }

    /// Store `data` under the name `digest`, right or wrong.
    pub fn put_as(&self, digest: &str, data: &[u8]) -> Result<()> {
        let hex = digest.strip_prefix("sha256:").context("sha256 digest")?;
        std::fs::write(self.dir.join("blobs/sha256").join(hex), data)?;
        Ok(())
    }

    /// `index.json` naming these manifest descriptors.
    pub fn index(&self, manifests: &[Value]) -> Result<()> {
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        std::fs::write(self.dir.join("index.json"), index.to_string())?;
        Ok(())
    }
}

/// An image as parts a test may break before writing it: layers, config, manifest.
#[derive(Debug, Clone)]
pub struct ImageParts {
    pub layers: Vec<RawLayer>,
    pub config: Value,
    /// The manifest template: `config` and `layers` are filled in by [`ImageParts::write`]
    /// (per-layer annotations kept by index).
    pub manifest: Value,
}

impl ImageParts {
    /// A plain OCI image (no labels) of these layers.
    pub fn plain(layers: Vec<RawLayer>) -> Self {
        let mut p = ImageParts {
            layers,
            config: serde_json::json!({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}}),
            manifest: serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}),
        };
        p.sync_diff_ids();
        p
    }

    /// The image of an existing layout (its only manifest).
    pub fn read(dir: &Path) -> Result<Self> {
        let l = Layout::open(dir);
        let manifest = l.manifest(None)?;
        let config = l.config(&manifest)?;
        let diffs = config["rootfs"]["diff_ids"]
            .as_array()
            .context("diff_ids")?;
        let mut layers = Vec::new();
        for (i, d) in manifest["layers"]
            .as_array()
            .context("layers")?
            .iter()
            .enumerate()
        {
            layers.push(RawLayer {
                blob: l.blob(d["digest"].as_str().context("digest")?)?,
                media_type: d["mediaType"].as_str().unwrap_or(MT_TAR).to_string(),
                diff_id: diffs[i].as_str().context("diff_id")?.to_string(),
            });
        }
        Ok(ImageParts {
            layers,
            config,
            manifest,
        })
    }

    /// Set the config's `rootfs.diff_ids` from the layers.
    pub fn sync_diff_ids(&mut self) {
        self.config["rootfs"]["diff_ids"] = self.layers.iter().map(|l| l.diff_id.clone()).collect();
    }

    /// Set a label in the config (and the manifest annotation of the same name).
    pub fn set_label(&mut self, k: &str, v: &str) {
        self.config["config"]["Labels"][k] = v.into();
        self.manifest["annotations"][k] = v.into();
    }

    /// Write the layout at `dir`; the manifest digest.
    pub fn write(&self, dir: &Path) -> Result<String> {
        self.write_edited(dir, |_, _| Ok(()))
    }

    /// Write the layout, letting `edit` change the manifest JSON (or write more blobs) before
    /// the manifest is stored; the manifest digest.
    pub fn write_edited(
        &self,
        dir: &Path,
        edit: impl FnOnce(&OciWriter, &mut Value) -> Result<()>,
    ) -> Result<String> {
        let w = OciWriter::new(dir)?;
        let mut m = self.manifest.clone();
        let mut cd = w.put(&serde_json::to_vec(&self.config)?)?;
        cd["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
        m["config"] = cd;
        let old = m["layers"].as_array().cloned().unwrap_or_default();
        let mut descs = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let mut d = w.put(&l.blob)?;
            d["mediaType"] = l.media_type.clone().into();
            if let Some(a) = old.get(i).and_then(|o| o.get("annotations")) {
                d["annotations"] = a.clone();
            }
            descs.push(d);
        }
        m["layers"] = descs.into();
        edit(&w, &mut m)?;
        let mut md = w.put(&serde_json::to_vec(&m)?)?;
        md["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
        let digest = md["digest"].as_str().unwrap_or_default().to_string();
        w.index(&[md])?;
        Ok(digest)
    }
}
