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
