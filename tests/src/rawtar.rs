//! A tar writer that writes what it is told, byte for byte: any name, any type, any size field,
//! bad checksums, PAX records and GNU long names in any combination. The `tar` crate's builder
//! refuses (rightly) most of what the hostile-input tests need to write.

const BLOCK: usize = 512;

/// One header, before encoding. Numbers too large for their octal field are written in GNU
/// base-256, as GNU tar does.
#[derive(Debug, Clone)]
pub struct Hdr {
    pub name: Vec<u8>,
    pub kind: u8,
    pub mode: u64,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: u64,
    pub link: Vec<u8>,
}

impl Hdr {
    pub fn new(kind: u8, name: impl AsRef<[u8]>) -> Self {
        Hdr {
            name: name.as_ref().to_vec(),
            kind,
            mode: if kind == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            link: Vec::new(),
        }
    }

    /// The 512-byte GNU header, checksum included.
    pub fn encode(&self) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        let n = self.name.len().min(100);
        h[..n].copy_from_slice(&self.name[..n]);
        num(&mut h[100..108], self.mode);
        num(&mut h[108..116], self.uid);
        num(&mut h[116..124], self.gid);
        num(&mut h[124..136], self.size);
        num(&mut h[136..148], self.mtime);
        h[156] = self.kind;
        let l = self.link.len().min(100);
        h[157..157 + l].copy_from_slice(&self.link[..l]);
        h[257..263].copy_from_slice(b"ustar ");
        h[263..265].copy_from_slice(b" \0");
        set_cksum(&mut h);
        h
    }
}

/// An octal field (NUL-terminated), or GNU base-256 when the value does not fit.
fn num(f: &mut [u8], v: u64) {
    let digits = f.len() - 1;
    let s = format!("{v:0digits$o}");
    if s.len() <= digits {
        f[..digits].copy_from_slice(s.as_bytes());
        f[digits] = 0;
    } else {
        f.fill(0);
        f[0] = 0x80;
        let be = v.to_be_bytes();
        let n = be.len().min(f.len() - 1);
        let len = f.len();
        f[len - n..].copy_from_slice(&be[be.len() - n..]);
    }
}

/// Recompute the checksum of a header block.
pub fn set_cksum(h: &mut [u8; BLOCK]) {
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

/// A PAX record `LEN key=value\n` (LEN counts the whole record).
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// A tar stream being written.
#[derive(Default)]
pub struct RawTar {
    pub buf: Vec<u8>,
}

impl RawTar {
    pub fn new() -> Self {
        Self::default()
    }

    /// A header block as is.
    pub fn block(&mut self, h: &[u8; BLOCK]) -> &mut Self {
        self.buf.extend_from_slice(h);
        self
    }

    /// Data, padded to whole blocks.
    pub fn data(&mut self, d: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(d);
        let pad = (BLOCK - d.len() % BLOCK) % BLOCK;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// A header (size taken from the data) and its data.
    /// Names over 100 bytes get a GNU long name entry first.
    pub fn entry(&mut self, mut h: Hdr, d: &[u8]) -> &mut Self {
        if h.name.len() > 100 && h.kind != b'L' {
            let name = h.name.clone();
            self.gnu_long_name(&name);
        }
        h.size = d.len() as u64;
        self.block(&h.encode()).data(d)
    }

    pub fn file(&mut self, path: &str, d: &[u8]) -> &mut Self {
        self.entry(Hdr::new(b'0', path), d)
    }

    pub fn file_mode(&mut self, path: &str, mode: u64, d: &[u8]) -> &mut Self {
        let mut h = Hdr::new(b'0', path);
        h.mode = mode;
        self.entry(h, d)
    }

    pub fn dir(&mut self, path: &str) -> &mut Self {
        self.entry(Hdr::new(b'5', path), &[])
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Hdr::new(b'2', path);
        h.link = target.as_bytes().to_vec();
        self.entry(h, &[])
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Hdr::new(b'1', path);
        h.link = target.as_bytes().to_vec();
        self.entry(h, &[])
    }

    /// A GNU long name (`L`) entry for the next entry.
    pub fn gnu_long_name(&mut self, name: &[u8]) -> &mut Self {
        let mut d = name.to_vec();
        d.push(0);
        self.entry(Hdr::new(b'L', "././@LongLink"), &d)
    }

    /// A PAX (`x`) entry with these records, for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let d: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        self.entry(Hdr::new(b'x', "././@PaxHeader"), &d)
    }

    /// The two zero blocks that end an archive.
    pub fn end(&mut self) -> &mut Self {
        self.buf.extend(std::iter::repeat_n(0u8, 2 * BLOCK));
        self
    }

    /// The archive, ended.
    pub fn finish(&mut self) -> Vec<u8> {
        self.end();
        std::mem::take(&mut self.buf)
    }
}

/// Where an entry of an existing tar stream lies.
#[derive(Debug, Clone)]
pub struct Located {
    pub path: String,
    pub kind: u8,
    pub header_pos: usize,
    pub data_pos: usize,
    pub size: usize,
}

/// Every entry of `tar` with its position; and the offset where the end-of-archive blocks
/// start (where entries can be appended).
pub fn locate(tar: &[u8]) -> std::io::Result<(Vec<Located>, usize)> {
    let mut ar = tar::Archive::new(tar);
    let mut out = Vec::new();
    let mut end = 0;
    for e in ar.entries()? {
        let e = e?;
        let data_pos = e.raw_file_position() as usize;
        let size = e.size() as usize;
        end = data_pos + size.div_ceil(BLOCK) * BLOCK;
        out.push(Located {
            path: String::from_utf8_lossy(&e.path_bytes()).to_string(),
            kind: e.header().entry_type().as_byte(),
            header_pos: e.raw_header_position() as usize,
            data_pos,
            size,
        });
    }
    Ok((out, end))
}

/// `tar` with `more` (entries, no end blocks) appended before its end-of-archive blocks.
pub fn append(tar: &[u8], more: &[u8]) -> std::io::Result<Vec<u8>> {
    let (_, end) = locate(tar)?;
    let mut v = tar[..end].to_vec();
    v.extend_from_slice(more);
    v.extend(std::iter::repeat_n(0u8, 2 * BLOCK));
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tar_crate_reads_what_it_writes() {
        let long = format!("usr/{}", "n".repeat(300));
        let t = RawTar::new()
            .dir("usr")
            .file("usr/a", b"hello")
            .gnu_long_name(long.as_bytes())
            .file("ignored", b"x")
            .pax(&[("path", b"usr/p")])
            .file("ignored-too", b"")
            .finish();
        let mut ar = tar::Archive::new(t.as_slice());
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).to_string())
            .collect();
        assert_eq!(names, ["usr", "usr/a", long.as_str(), "usr/p"]);
        assert_eq!(pax_record("path", b"x"), b"9 path=x\n");
        let mut h = Hdr::new(b'0', "big");
        h.uid = 1 << 40;
        let e = h.encode();
        let mut ar = tar::Archive::new(&e[..]);
        let hdr = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(hdr.header().uid().unwrap(), 1 << 40);
    }
}
