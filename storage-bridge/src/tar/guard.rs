//! A reader that watches a tar stream's headers go by, before the `tar` crate parses them,
//! and stops metadata entries that would make it allocate without bound: the crate reads GNU
//! long names (`L`, `K`) and PAX records (`x`, `g`) whole into memory, so a 2 MB gzip blob
//! could ask for gigabytes. GNU sparse entries with extension blocks are refused too, and so is
//! an entry whose GNU long name and PAX `path` (or long link and `linkpath`) disagree: the `tar`
//! crate takes the long name, Go's `archive/tar` (podman, buildah) the PAX path, so the two
//! would see different files.
//!
//! The guard can only find the next header if it counts each entry's data exactly as the `tar`
//! crate (0.4) does: the size field parsed the same way (leading spaces, base-256), and a PAX
//! `size` record overriding it. Any difference would let an entry's data hide a header from the
//! guard, so the parsing below mirrors the crate's, function for function.

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
    /// Data of the current entry kept for later (a PAX record set or a GNU long name/link),
    /// and how many of its bytes are still to come.
    capture: Option<(u8, Vec<u8>)>,
    capture_left: u64,
    /// Extension entries read since the last real entry, which apply to the next one.
    pax: Option<Vec<u8>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

/// The `tar` crate's `num_field_wrapper_from`, with an error where it would silently wrap.
fn num_field(f: &[u8]) -> io::Result<u64> {
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
    // The crate's `octal_from`: up to the first NUL, trimmed, base 8.
    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    let s = std::str::from_utf8(&f[..end])
        .map_err(|_| io::Error::other("tar header size field is not text"))?;
    u64::from_str_radix(s.trim(), 8)
        .map_err(|_| io::Error::other(format!("tar header size field {s:?} is not a number")))
}

/// PAX records as the `tar` crate splits them: `LEN key=value` lines; None for a malformed one.
fn pax_records(data: &[u8]) -> impl Iterator<Item = Option<(&[u8], &[u8])>> {
    data.split(|&b| b == b'\n')
        .take_while(|l| !l.is_empty())
        .map(|line| {
            let sp = line.iter().position(|&b| b == b' ')?;
            let len: usize = std::str::from_utf8(&line[..sp]).ok()?.parse().ok()?;
            if line.len() + 1 != len {
                return None;
            }
            let kv = &line[sp + 1..];
            let eq = kv.iter().position(|&b| b == b'=')?;
            Some((&kv[..eq], &kv[eq + 1..]))
        })
}

/// The crate's `pax_extensions_value(data, "size")`: the first `size` record, None when a
/// record before it is malformed or its value is not a number.
fn pax_size(data: &[u8]) -> Option<u64> {
    for r in pax_records(data) {
        let (k, v) = r?;
        if k == b"size" {
            return std::str::from_utf8(v).ok()?.parse().ok();
        }
    }
    None
}

/// The crate's lookup of `path` or `linkpath` (malformed records skipped).
fn pax_value<'a>(data: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    pax_records(data)
        .flatten()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// A long name as the crate uses it: one trailing NUL dropped.
fn strip_nul(v: &[u8]) -> &[u8] {
    v.strip_suffix(&[0]).unwrap_or(v)
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R) -> Self {
        TarGuard {
            inner,
            header: [0; BLOCK],
            filled: 0,
            data_left: 0,
            capture: None,
            capture_left: 0,
            pax: None,
            long_name: None,
            long_link: None,
        }
    }

    fn header_done(&mut self) -> io::Result<()> {
        self.filled = 0;
        let h = self.header;
        if h.iter().all(|&b| b == 0) {
            return Ok(());
        }
        let kind = h[156];
        let extension = matches!(kind, b'L' | b'K' | b'x' | b'g');
        let mut size = num_field(&h[124..136])?;
        if extension && size > MAX_META_ENTRY {
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
        // Only GNU and ustar headers make the crate read `L`, `K` and `x` as extensions.
        let magic = &h[257..265];
        let recognized = magic == b"ustar  \0" || magic == b"ustar\x0000";
        if recognized && matches!(kind, b'L' | b'K' | b'x') {
            if size > 0 {
                self.capture = Some((kind, Vec::with_capacity(size as usize)));
                self.capture_left = size;
            } else {
                self.store(kind, Vec::new());
            }
        } else {
            // A real entry (or one the crate returns as such): the extensions apply to it,
            // then are spent.
            if !extension {
                if let Some(s) = self.pax.as_deref().and_then(pax_size) {
                    size = s;
                }
            }
            let pax = self.pax.take();
            let long_name = self.long_name.take();
            let long_link = self.long_link.take();
            if let Some(pax) = &pax {
                for (long, key, what) in [
                    (&long_name, &b"path"[..], "long name"),
                    (&long_link, &b"linkpath"[..], "long link"),
                ] {
                    if let (Some(l), Some(p)) = (long, pax_value(pax, key)) {
                        if strip_nul(l) != p {
                            return Err(io::Error::other(format!(
                                "a GNU {what} and a PAX {} that disagree ({:?} and {:?})",
                                String::from_utf8_lossy(key),
                                String::from_utf8_lossy(strip_nul(l)),
                                String::from_utf8_lossy(p),
                            )));
                        }
                    }
                }
            }
        }
        self.data_left = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        Ok(())
    }

    fn store(&mut self, kind: u8, data: Vec<u8>) {
        match kind {
            b'L' => self.long_name = Some(data),
            b'K' => self.long_link = Some(data),
            _ => self.pax = Some(data),
        }
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut i = 0;
        while i < n {
            if self.data_left > 0 {
                let take = (self.data_left.min((n - i) as u64)) as usize;
                if self.capture_left > 0 {
                    let keep = (self.capture_left.min(take as u64)) as usize;
                    if let Some((_, v)) = self.capture.as_mut() {
                        v.extend_from_slice(&buf[i..i + keep]);
                    }
                    self.capture_left -= keep as u64;
                    if self.capture_left == 0 {
                        if let Some((kind, v)) = self.capture.take() {
                            self.store(kind, v);
                        }
                    }
                }
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

    /// The size as the `tar` crate reads it, or the guard loses track of the headers.
    #[test]
    fn counts_sizes_as_the_tar_crate_does() {
        assert_eq!(num_field(b"       1000\0").unwrap(), 512);
        assert_eq!(num_field(b"00000001000\0").unwrap(), 512);
        assert!(num_field(b"zzz\0").is_err());
        let mut b256 = [0u8; 12];
        b256[0] = 0x80;
        b256[11] = 2;
        assert_eq!(num_field(&b256).unwrap(), 2);
        assert_eq!(pax_size(b"12 size=512\n"), Some(512));
        assert_eq!(pax_size(b"99 bad\n12 size=512\n"), None);
        assert_eq!(
            pax_value(b"15 path=usr/ab\n", b"path"),
            Some(&b"usr/ab"[..])
        );
    }
}
