//! tar ⇄ layer blob: compress while hashing both the uncompressed stream (diff_id) and the
//! blob (digest), counting bytes on both sides.

use super::BlobRef;
use crate::compression::{Compression, Encoder};
use sha2::{Digest, Sha256};
use std::io::{self, Write};

/// A writer that hashes and counts what passes through.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// The inner writer and what passed: `sha256:<hex>` and byte count.
    pub fn finish(self) -> (W, BlobRef) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (
            self.inner,
            BlobRef {
                digest,
                size: self.count,
            },
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A finished layer: blob and uncompressed identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerBlob {
    pub blob: BlobRef,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
    pub uncompressed_size: u64,
    pub media_type: &'static str,
}

/// tar bytes in, compressed blob out, with a callback per chunk of uncompressed bytes.
pub struct LayerWriter<'p, W: Write> {
    inner: HashingWriter<Encoder<HashingWriter<W>>>,
    compression: Compression,
    on_bytes: &'p (dyn Fn(u64) + Sync),
}

impl<'p, W: Write> LayerWriter<'p, W> {
    pub fn new(
        compression: Compression,
        out: W,
        on_bytes: &'p (dyn Fn(u64) + Sync),
    ) -> io::Result<Self> {
        let enc = Encoder::new(compression, HashingWriter::new(out))?;
        Ok(LayerWriter {
            inner: HashingWriter::new(enc),
            compression,
            on_bytes,
        })
    }

    pub fn finish(self) -> io::Result<(W, LayerBlob)> {
        let (enc, diff) = self.inner.finish();
        let hashed = enc.finish()?;
        let (mut out, blob) = hashed.finish();
        out.flush()?;
        let (blob, diff_id, uncompressed_size) = if self.compression == Compression::None {
            (blob.clone(), blob.digest, blob.size)
        } else {
            (blob, diff.digest, diff.size)
        };
        Ok((
            out,
            LayerBlob {
                blob,
                diff_id,
                uncompressed_size,
                media_type: self.compression.media_type(),
            },
        ))
    }
}

impl<W: Write> Write for LayerWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        (self.on_bytes)(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(c: Compression) -> LayerBlob {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let noop = |_n: u64| {};
        let mut w = LayerWriter::new(c, Vec::new(), &noop).unwrap();
        w.write_all(&data).unwrap();
        let (blob, l) = w.finish().unwrap();
        assert_eq!(l.blob.size, blob.len() as u64);
        assert_eq!(
            l.blob.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&blob)))
        );
        assert_eq!(
            l.diff_id,
            format!("sha256:{}", hex::encode(Sha256::digest(&data)))
        );
        let mut back = Vec::new();
        match c {
            Compression::Gzip => flate2::read::GzDecoder::new(blob.as_slice())
                .read_to_end(&mut back)
                .unwrap(),
            Compression::Zstd => zstd::stream::read::Decoder::new(blob.as_slice())
                .unwrap()
                .read_to_end(&mut back)
                .unwrap(),
            Compression::None => {
                back = blob.clone();
                back.len()
            }
        };
        assert_eq!(back, data);
        l
    }

    #[test]
    fn every_compression_roundtrips_and_is_deterministic() {
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            assert_eq!(roundtrip(c), roundtrip(c), "{c}");
        }
    }
}
