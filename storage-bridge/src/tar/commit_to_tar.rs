//! ostree commit ─▶ tar stream, in the ostree-ext "tar format v1" layout.
//!
//! A layer is at once a root filesystem and a partial `bare-split-xattrs` ostree repo:
//!
//! ```text
//! ./                                    root dir (root dirmeta's owner and mode)
//! sysroot/ostree/repo/{objects/00..ff,extensions,refs/..,state,tmp/cache}, repo/config
//! sysroot/ostree/repo/objects/XX/<c>.commit, .commitmeta      (layer 0 only)
//! objects/XX/<m>.dirmeta, <t>.dirtree, dir entries            (layer 0 only, depth first)
//! objects/XX/<x>.file-xattrs, <c>.file-xattrs-link ─▶ it      (before each content object)
//! objects/XX/<c>.file                                         (content, mtime 0)
//! usr/bin/foo ─hardlink─▶ objects/XX/<c>.file                 (checkout paths; usr/etc as etc)
//! ```
//!
//! Output is byte-stable: fixed header fields (GNU format, mtime 0, no user names), objects
//! sorted by checksum, directories in dirtree order.

use crate::commit::{open_file, CommitTree, DirMeta, FileMeta, Repo};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::{self, Read, Write};

const OSTREEDIR: &str = "sysroot/ostree";
const REPO_CONFIG: &[u8] = b"[core]\nrepo_version=1\nmode=bare-split-xattrs\n";
const REPO_SUBDIRS: [&str; 8] = [
    "extensions",
    "refs",
    "refs/heads",
    "refs/mirrors",
    "refs/remotes",
    "state",
    "tmp",
    "tmp/cache",
];
/// Largest name or link target that fits a plain header field.
const NAME_FIELD: usize = 100;

/// `sysroot/ostree/repo/objects/XX/REST.SUFFIX`
pub fn object_path(checksum: &str, suffix: &str) -> String {
    let (a, b) = checksum.split_at(2);
    format!("{OSTREEDIR}/repo/objects/{a}/{b}.{suffix}")
}

/// The tar path of a commit path: `usr/etc/...` is written as `etc/...`.
pub fn checkout_path(p: &str) -> &str {
    match p.strip_prefix("usr/") {
        Some(rest) if rest == "etc" || rest.starts_with("etc/") => rest,
        _ => p,
    }
}

/// Content under the commit's own top-level `sysroot` has no checkout path (the repo skeleton
/// lives there); its objects are still written.
fn has_checkout_path(p: &str) -> bool {
    !(p == "sysroot" || p.starts_with("sysroot/"))
}

/// Writes ostree content into one tar stream.
pub struct TarWriter<W: Write> {
    out: tar::Builder<W>,
    wrote_xattrs: HashSet<String>,
}

fn header(kind: tar::EntryType, uid: u32, gid: u32, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mode(mode & 0o7777);
    h.set_mtime(0);
    h.set_size(size);
    h
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        let mut out = tar::Builder::new(out);
        out.mode(tar::HeaderMode::Deterministic);
        TarWriter {
            out,
            wrote_xattrs: HashSet::new(),
        }
    }

    /// End the archive and hand back the writer.
    pub fn finish(self) -> io::Result<W> {
        self.out.into_inner()
    }

    fn dir(&mut self, path: &str, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
        let mut h = header(tar::EntryType::Directory, uid, gid, mode, 0);
        self.out.append_data(&mut h, path, io::empty())
    }

    fn data(&mut self, path: &str, buf: &[u8]) -> io::Result<()> {
        let mut h = header(tar::EntryType::Regular, 0, 0, 0o644, buf.len() as u64);
        self.out.append_data(&mut h, path, buf)
    }

    /// An entry whose link name is written literally (no path normalization), with a GNU
    /// long-link record when it does not fit the header.
    fn linked(&mut self, mut h: tar::Header, path: &str, target: &[u8]) -> io::Result<()> {
        if target.len() > NAME_FIELD {
            let mut lh = header(
                tar::EntryType::GNULongLink,
                0,
                0,
                0o644,
                target.len() as u64 + 1,
            );
            lh.as_gnu_mut()
                .ok_or_else(|| io::Error::other("not a GNU header"))?
                .name[..13]
                .copy_from_slice(b"././@LongLink");
            lh.set_cksum();
            let mut data = target.to_vec();
            data.push(0);
            self.out.append(&lh, data.as_slice())?;
            h.set_link_name_literal(&target[..NAME_FIELD])?;
        } else {
            h.set_link_name_literal(target)?;
        }
        self.out.append_data(&mut h, path, io::empty())
    }

    /// Root dir and the repo skeleton (every layer starts with it).
    pub fn write_skeleton(&mut self, root: Option<&DirMeta>) -> io::Result<()> {
        if let Some(r) = root {
            self.dir("./", r.uid, r.gid, r.mode)?;
        }
        for p in [
            "sysroot",
            OSTREEDIR,
            "sysroot/ostree/repo",
            "sysroot/ostree/repo/objects",
        ] {
            self.dir(p, 0, 0, 0o755)?;
        }
        for d in 0..=0xffu32 {
            self.dir(&format!("{OSTREEDIR}/repo/objects/{d:02x}"), 0, 0, 0o755)?;
        }
        for d in REPO_SUBDIRS {
            self.dir(&format!("{OSTREEDIR}/repo/{d}"), 0, 0, 0o755)?;
        }
        self.data(&format!("{OSTREEDIR}/repo/config"), REPO_CONFIG)
    }

    /// Layer 0's structure: commit, commitmeta, every dirtree/dirmeta, every directory entry,
    /// and `var/tmp` when the commit lacks it.
    pub fn write_commit_structure(&mut self, tree: &CommitTree) -> io::Result<()> {
        self.data(&object_path(&tree.checksum, "commit"), &tree.commit_bytes)?;
        if let Some(m) = &tree.commitmeta_bytes {
            self.data(&object_path(&tree.checksum, "commitmeta"), m)?;
        }
        let mut wrote_meta = HashSet::new();
        let mut wrote_tree = HashSet::new();
        let root = &tree.dirs[0];
        self.dirmeta_object(tree, &root.dirmeta, &mut wrote_meta)?;
        self.walk_structure(tree, 0, true, &mut wrote_meta, &mut wrote_tree)?;
        if !tree.dirs.iter().any(|d| d.path == "var/tmp") {
            self.dir("var/tmp", 0, 0, 0o1777)?;
        }
        Ok(())
    }

    fn dirmeta_object(
        &mut self,
        tree: &CommitTree,
        csum: &str,
        wrote: &mut HashSet<String>,
    ) -> io::Result<()> {
        if wrote.insert(csum.to_string()) {
            self.data(&object_path(csum, "dirmeta"), &tree.dirmetas[csum].0)?;
        }
        Ok(())
    }

    fn walk_structure(
        &mut self,
        tree: &CommitTree,
        idx: usize,
        entries: bool,
        wrote_meta: &mut HashSet<String>,
        wrote_tree: &mut HashSet<String>,
    ) -> io::Result<()> {
        let d = &tree.dirs[idx];
        if wrote_tree.insert(d.dirtree.clone()) {
            self.data(
                &object_path(&d.dirtree, "dirtree"),
                &tree.dirtrees[&d.dirtree],
            )?;
        }
        for (name, child) in &d.subdirs {
            let c = &tree.dirs[*child];
            self.dirmeta_object(tree, &c.dirmeta, wrote_meta)?;
            // The commit's own top-level sysroot/ is the repo skeleton's: objects, no entries.
            let child_entries = entries && !(idx == 0 && name == "sysroot");
            if child_entries {
                let m = &tree.dirmetas[&c.dirmeta].1;
                self.dir(checkout_path(&c.path), m.uid, m.gid, m.mode)?;
            }
            self.walk_structure(tree, *child, child_entries, wrote_meta, wrote_tree)?;
        }
        Ok(())
    }

    /// One content object, its xattrs records before it, then its checkout paths.
    pub fn write_content(
        &mut self,
        checksum: &str,
        meta: &FileMeta,
        content: Option<&mut dyn Read>,
        paths: &[String],
    ) -> Result<()> {
        let xcsum = hex::encode(Sha256::digest(&meta.xattrs_raw));
        let xpath = object_path(&xcsum, "file-xattrs");
        if self.wrote_xattrs.insert(xcsum) {
            self.data(&xpath, &meta.xattrs_raw)?;
        }
        let h = header(tar::EntryType::Link, 0, 0, 0o644, 0);
        self.linked(
            h,
            &object_path(checksum, "file-xattrs-link"),
            xpath.as_bytes(),
        )?;

        let objpath = object_path(checksum, "file");
        // Non-SELinux xattrs also as PAX records, so container runtimes apply them.
        let pax: Vec<(String, &[u8])> = meta
            .xattrs
            .iter()
            .filter(|(k, _)| k.as_slice() != b"security.selinux")
            .filter_map(|(k, v)| {
                std::str::from_utf8(k)
                    .ok()
                    .map(|k| (format!("SCHILY.xattr.{k}"), v.as_slice()))
            })
            .collect();
        if !pax.is_empty() {
            self.out
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))?;
        }
        let (uid, gid, mode) = (meta.uid, meta.gid, meta.mode);
        if let Some(target) = &meta.symlink {
            let h = header(tar::EntryType::Symlink, uid, gid, mode, 0);
            self.linked(h, &objpath, target.as_bytes())?;
        } else {
            let mut h = header(tar::EntryType::Regular, uid, gid, mode, meta.size);
            let r = content.context("regular content object without content")?;
            // A short read would corrupt the stream: the tar crate pads but cannot tell.
            let mut counted = r.take(meta.size);
            self.out
                .append_data(&mut h, &objpath, &mut counted)
                .with_context(|| format!("writing content object {checksum}"))?;
            anyhow::ensure!(
                counted.limit() == 0,
                "content object {checksum} is shorter than its recorded size {}",
                meta.size
            );
        }
        for p in paths.iter().filter(|p| has_checkout_path(p)) {
            let tp = checkout_path(p);
            if meta.symlink.is_none() && meta.size == 0 {
                // Empty files are real files: container builds that touch them must not
                // modify the object through a hardlink. They carry the xattrs themselves.
                if !pax.is_empty() {
                    self.out
                        .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))?;
                }
                let mut h = header(tar::EntryType::Regular, uid, gid, mode, 0);
                self.out.append_data(&mut h, tp, io::empty())?;
            } else {
                let h = header(tar::EntryType::Link, uid, gid, mode, 0);
                self.linked(h, tp, objpath.as_bytes())?;
            }
        }
        Ok(())
    }
}

/// What one layer holds.
#[derive(Debug, Clone, Default)]
pub struct LayerContent {
    /// Layer 0: commit, metadata and structure.
    pub commit_structure: bool,
    /// Content objects, sorted by checksum.
    pub objects: Vec<String>,
}

/// Write a whole layer: skeleton, then structure (layer 0), then the content objects.
pub fn write_layer<W: Write>(
    repo: &Repo,
    tree: &CommitTree,
    paths: &std::collections::BTreeMap<String, Vec<String>>,
    layer: &LayerContent,
    out: W,
) -> Result<W> {
    let mut w = TarWriter::new(out);
    let root = layer.commit_structure.then(|| tree.root_meta());
    w.write_skeleton(root).context("writing repo skeleton")?;
    if layer.commit_structure {
        w.write_commit_structure(tree)
            .context("writing commit structure")?;
    }
    for csum in &layer.objects {
        let (meta, content) = open_file(repo, csum)?;
        let mut content = content;
        let r = content.as_mut().map(|r| r as &mut dyn Read);
        let p = paths.get(csum).map(Vec::as_slice).unwrap_or_default();
        w.write_content(csum, &meta, r, p)?;
    }
    w.finish().context("finishing tar stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_usr_etc_to_etc() {
        assert_eq!(checkout_path("usr/etc"), "etc");
        assert_eq!(checkout_path("usr/etc/passwd"), "etc/passwd");
        assert_eq!(checkout_path("usr/etcetera"), "usr/etcetera");
        assert_eq!(checkout_path("usr/bin/sh"), "usr/bin/sh");
        assert_eq!(checkout_path("etc/x"), "etc/x");
    }

    #[test]
    fn object_paths() {
        let c = "b8627e3ef0f255a322d2bd9610cfaaacc8f122b7f8d17c0e7e3caafa160f9fc7";
        assert_eq!(
            object_path(c, "file-xattrs-link"),
            "sysroot/ostree/repo/objects/b8/627e3ef0f255a322d2bd9610cfaaacc8f122b7f8d17c0e7e3caafa160f9fc7.file-xattrs-link"
        );
    }

    #[test]
    fn long_symlink_targets_are_literal() {
        let target = format!("../..//{}", "x/./".repeat(40));
        let meta = FileMeta {
            uid: 0,
            gid: 0,
            mode: libc::S_IFLNK | 0o777,
            size: 0,
            symlink: Some(target.clone()),
            xattrs_raw: vec![],
            xattrs: vec![],
        };
        let mut w = TarWriter::new(Vec::new());
        let c = "aa".repeat(32);
        w.write_content(&c, &meta, None, &["usr/lib/link".into()])
            .unwrap();
        let buf = w.finish().unwrap();
        let mut ar = tar::Archive::new(buf.as_slice());
        let mut seen = None;
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            if e.header().entry_type() == tar::EntryType::Symlink {
                seen = Some(e.link_name_bytes().unwrap().into_owned());
            }
        }
        assert_eq!(seen.as_deref(), Some(target.as_bytes()));
    }
}
