//! layer blob ─▶ tar: verify the blob's digest and size while reading, decompress by media
//! type, and verify the uncompressed stream against its diff_id.
//!
//! Verification happens at [`VerifiedLayer::finish`], after the consumer has read what it
//! wanted: the rest is drained, then both digests are compared. Nothing may be recorded under
//! a digest before `finish` returns Ok.

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};
use std::io::{self, Read};

/// A layer whose bytes are not what the manifest and config say (digest, size or diff_id):
/// callers tell it from a failure to read by `downcast_ref`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Mismatch(pub String);

/// Hashes and counts what is read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: Option<u64>,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, limit: Option<u64>) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            limit,
        }
    }

    /// Drain the rest; `sha256:<hex>` and the byte count, without consuming the reader.
    pub fn finish_digest(&mut self) -> io::Result<(String, u64)> {
        io::copy(self, &mut io::sink())?;
        let h = std::mem::take(&mut self.hasher);
        Ok((format!("sha256:{}", hex::encode(h.finalize())), self.count))
    }

    /// Drain the rest; `sha256:<hex>` and the byte count.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
        ))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if let Some(l) = self.limit {
            if self.count > l {
                return Err(io::Error::other(format!(
                    "stream exceeds its limit of {l} bytes"
                )));
            }
        }
        Ok(n)
    }
}

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerEncoding {
    Tar,
    Gzip,
    Zstd,
}

impl LayerEncoding {
    pub fn from_media_type(mt: &str) -> Result<Self> {
        Ok(match mt {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => LayerEncoding::Tar,
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => LayerEncoding::Gzip,
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => LayerEncoding::Zstd,
            other => bail!("unsupported layer media type {other:?} (tar, tar+gzip, tar+zstd)"),
        })
    }
}

type Decoder = Box<dyn Read + Send + 'static>;

/// Environment variable that lowers (never raises) the uncompressed-size limit of every layer,
/// in bytes: for machines that want a tighter bound than the importer's, and for the tests, which
/// cannot write a 64 GiB decompression bomb.
pub const MAX_UNCOMPRESSED_ENV: &str = "OSTREE_CONTAINER_MAX_LAYER_BYTES";

/// `max`, or the lower limit the environment asks for.
fn uncompressed_limit(max: u64) -> Result<u64> {
    match std::env::var(MAX_UNCOMPRESSED_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(max),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(l) => Ok(l.min(max)),
            Err(_) => bail!("{MAX_UNCOMPRESSED_ENV}={v:?} is not a number of bytes"),
        },
        Err(e) => bail!("{MAX_UNCOMPRESSED_ENV}: {e}"),
    }
}

/// A layer being read: tar bytes out, both identities checked at the end.
pub struct VerifiedLayer<R: Read + Send + 'static> {
    tar: HashingReader<Decoder>,
    blob: std::sync::Arc<std::sync::Mutex<Option<HashingReader<R>>>>,
    digest: String,
    size: u64,
    diff_id: Option<String>,
}

/// Shares the blob reader between the decoder and `finish`, which drains and verifies it.
struct Shared<R>(std::sync::Arc<std::sync::Mutex<Option<HashingReader<R>>>>);

impl<R: Read> Read for Shared<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut g = self
            .0
            .lock()
            .map_err(|_| io::Error::other("blob reader poisoned"))?;
        match g.as_mut() {
            Some(r) => r.read(buf),
            None => Ok(0),
        }
    }
}

impl<R: Read + Send + 'static> VerifiedLayer<R> {
    /// `blob` must be `size` bytes with digest `digest`; its tar, `diff_id` when known.
    /// `max_uncompressed` (or the lower [`MAX_UNCOMPRESSED_ENV`]) stops decompression bombs.
    pub fn new(
        blob: R,
        media_type: &str,
        digest: &str,
        size: u64,
        diff_id: Option<&str>,
        max_uncompressed: u64,
    ) -> Result<Self> {
        let enc = LayerEncoding::from_media_type(media_type)?;
        let max_uncompressed = uncompressed_limit(max_uncompressed)?;
        let shared = std::sync::Arc::new(std::sync::Mutex::new(Some(HashingReader::new(
            blob,
            Some(size),
        ))));
        let src = Shared(shared.clone());
        let dec: Decoder = match enc {
            LayerEncoding::Tar => Box::new(src),
            LayerEncoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(src)),
            LayerEncoding::Zstd => Box::new(zstd::stream::read::Decoder::new(src)?),
        };
        Ok(VerifiedLayer {
            tar: HashingReader::new(dec, Some(max_uncompressed)),
            blob: shared,
            digest: digest.to_string(),
            size,
            diff_id: diff_id.map(str::to_string),
        })
    }

    /// The digest the blob is checked against.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Drain and check: the blob's digest and size, and the tar's diff_id.
    pub fn finish(self) -> Result<u64> {
        let (tar_digest, tar_size) = self.tar.finish()?;
        let blob = self
            .blob
            .lock()
            .map_err(|_| anyhow::anyhow!("blob reader poisoned"))?
            .take()
            .ok_or_else(|| anyhow::anyhow!("blob reader already finished"))?;
        let (digest, size) = blob.finish()?;
        if size != self.size {
            return Err(Mismatch(format!(
                "blob {} is {size} bytes, the manifest says {}",
                self.digest, self.size
            ))
            .into());
        }
        if digest != self.digest {
            return Err(Mismatch(format!("blob {} has digest {digest}", self.digest)).into());
        }
        if let Some(want) = &self.diff_id {
            if &tar_digest != want {
                return Err(Mismatch(format!(
                    "layer {} uncompresses to {tar_digest}, the config's diff_id is {want}",
                    self.digest
                ))
                .into());
            }
        }
        Ok(tar_size)
    }
}

impl<R: Read + Send + 'static> crate::progress::BlobPosition for VerifiedLayer<R> {
    fn blob_bytes_read(&self) -> u64 {
        self.blob
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|r| r.count))
            .unwrap_or(self.size)
    }
}

impl<R: Read + Send + 'static> Read for VerifiedLayer<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tar.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }
    fn digest(d: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(d)))
    }

    #[test]
    fn verifies_digest_size_and_diff_id() {
        let tar = b"hello world".repeat(100);
        let blob = gz(&tar);
        let ok = VerifiedLayer::new(
            std::io::Cursor::new(blob.clone()),
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &digest(&blob),
            blob.len() as u64,
            Some(&digest(&tar)),
            1 << 20,
        )
        .unwrap();
        assert_eq!(ok.finish().unwrap(), tar.len() as u64);
        let bad = VerifiedLayer::new(
            std::io::Cursor::new(blob.clone()),
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &digest(b"x"),
            blob.len() as u64,
            None,
            1 << 20,
        )
        .unwrap();
        assert!(bad.finish().unwrap_err().to_string().contains("has digest"));
        let bad = VerifiedLayer::new(
            std::io::Cursor::new(blob.clone()),
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &digest(&blob),
            blob.len() as u64,
            Some(&digest(b"y")),
            1 << 20,
        )
        .unwrap();
        assert!(bad.finish().unwrap_err().to_string().contains("diff_id"));
        let bomb = VerifiedLayer::new(
            std::io::Cursor::new(blob.clone()),
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &digest(&blob),
            blob.len() as u64,
            None,
            100,
        )
        .unwrap();
        assert!(bomb.finish().unwrap_err().to_string().contains("limit"));
        assert!(LayerEncoding::from_media_type("application/x-foo").is_err());
    }

    #[test]
    fn reads_every_gzip_member() {
        let mut blob = gz(b"first ");
        blob.extend(gz(b"second"));
        let mut l = VerifiedLayer::new(
            std::io::Cursor::new(blob.clone()),
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &digest(&blob),
            blob.len() as u64,
            None,
            1 << 20,
        )
        .unwrap();
        let mut s = String::new();
        l.read_to_string(&mut s).unwrap();
        assert_eq!(s, "first second");
    }
}
