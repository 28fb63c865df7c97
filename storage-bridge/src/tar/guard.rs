//! A reader that watches a tar stream's headers go by, before the `tar` crate parses them,
//! and stops metadata entries that would make it allocate without bound: the crate reads GNU
//! long names (`L`, `K`) and PAX records (`x`, `g`) whole into memory, so a 2 MB gzip blob
//! could ask for gigabytes. GNU sparse entries with extension blocks are refused too.

use std::io::{self, Read};

/// Largest long name, long link or PAX record set accepted.
pub const MAX_META_ENTRY: u64 = 1 << 20;
const BLOCK: usize = 512;

/// Wraps the uncompressed tar stream.
pub struct TarGuard<R> {
    inner: R,
    header: [u8; BLOCK],
    filled: usize,
    /// Bytes of entry data (rounded up to whole blocks) still to pass before the next header.
    data_left: u64,
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R) -> Self {
        TarGuard {
            inner,
            header: [0; BLOCK],
            filled: 0,
            data_left: 0,
        }
    }

    fn size_field(h: &[u8; BLOCK]) -> io::Result<u64> {
        let f = &h[124..136];
        if f[0] & 0x80 != 0 {
            // GNU base-256: big-endian in the remaining bytes.
            let mut n: u64 = 0;
            for &b in &f[1..] {
                n = n
                    .checked_mul(256)
                    .and_then(|n| n.checked_add(u64::from(b)))
                    .ok_or_else(|| io::Error::other("tar size field overflows"))?;
            }
            return Ok(n);
        }
        let s: String = f
            .iter()
            .take_while(|&&b| b != 0 && b != b' ')
            .map(|&b| b as char)
            .collect();
        let s = s.trim();
        if s.is_empty() {
            return Ok(0);
        }
        u64::from_str_radix(s, 8)
            .map_err(|_| io::Error::other(format!("tar header size field {s:?} is not a number")))
    }

    fn header_done(&mut self) -> io::Result<()> {
        self.filled = 0;
        let h = self.header;
        if h.iter().all(|&b| b == 0) {
            return Ok(());
        }
        let kind = h[156];
        let size = Self::size_field(&h)?;
        if matches!(kind, b'L' | b'K' | b'x' | b'g') && size > MAX_META_ENTRY {
            return Err(io::Error::other(format!(
                "a tar metadata entry (type '{}') of {size} bytes, over the {MAX_META_ENTRY} byte limit",
                kind as char
            )));
        }
        if kind == b'S' && h[482] != 0 {
            return Err(io::Error::other(
                "GNU sparse files with extension headers are not supported",
            ));
        }
        self.data_left = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut i = 0;
        while i < n {
            if self.data_left > 0 {
                let take = (self.data_left.min((n - i) as u64)) as usize;
                self.data_left -= take as u64;
                i += take;
            } else {
                let take = (BLOCK - self.filled).min(n - i);
                self.header[self.filled..self.filled + take].copy_from_slice(&buf[i..i + take]);
                self.filled += take;
                i += take;
                if self.filled == BLOCK {
                    self.header_done()?;
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_normal_streams_and_stops_huge_long_names() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        let long = format!("usr/{}", "x".repeat(300));
        b.append_data(&mut h, &long, &b"hello"[..]).unwrap();
        let ok = b.into_inner().unwrap();
        let mut out = Vec::new();
        TarGuard::new(ok.as_slice()).read_to_end(&mut out).unwrap();
        assert_eq!(out, ok);
        let mut ar = tar::Archive::new(TarGuard::new(ok.as_slice()));
        assert_eq!(ar.entries().unwrap().count(), 1);

        // A GNU long name entry claiming 2 MiB.
        let mut lh = tar::Header::new_gnu();
        lh.set_entry_type(tar::EntryType::GNULongName);
        lh.set_size(2 << 20);
        lh.set_cksum();
        let mut bomb = lh.as_bytes().to_vec();
        bomb.extend(std::iter::repeat_n(b'a', 4096));
        let e = TarGuard::new(bomb.as_slice())
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("type 'L'"), "{e}");
    }
}
