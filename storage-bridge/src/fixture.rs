//! Build ostree commits from a small text description (tests and the README demo).
//!
//! One entry a line; `#` starts a comment; values with spaces go in double quotes, with `\n`,
//! `\t`, `\\` and `\"` escapes:
//!
//! ```text
//! subject "Sample OS 1.0"            commit subject
//! timestamp 1700000000               commit time (default 1700000000)
//! meta version=1.0                   string commit metadata
//! bootable                           sets ostree.bootable
//! dir  usr/lib/foo mode=0755 uid=0 gid=0 xattr.user.component=foo
//! file usr/bin/hello mode=0755 content="#!/bin/sh\necho hi\n" xattr.security.capability=hex:01..
//! file usr/bin/busybox mode=0755 from=/bin/busybox
//! file usr/share/empty                (empty file, mode 0644)
//! link usr/bin/sh target=busybox
//! hard usr/bin/hello2 target=usr/bin/hello
//! kernel 6.1.0-test                  usr/lib/modules/6.1.0-test/{vmlinuz,initramfs.img}
//! ```
//! Parent directories are created root:root 0755 unless described.

use anyhow::{anyhow, bail, Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File(Vec<u8>),
    Link(String),
    Hard(String),
}

#[derive(Debug, Clone)]
struct Entry {
    node: Node,
    uid: u32,
    gid: u32,
    mode: u32,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// A parsed fixture description.
#[derive(Debug, Clone, Default)]
pub struct Fixture {
    entries: BTreeMap<String, Entry>,
    subject: String,
    timestamp: u64,
    meta: BTreeMap<String, String>,
    bootable: bool,
}

fn tokenize(line: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut any = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_q = !in_q;
                any = true;
            }
            '\\' if in_q => match chars.next() {
                Some('n') => cur.push('\n'),
                Some('t') => cur.push('\t'),
                Some(o) => cur.push(o),
                None => bail!("dangling backslash"),
            },
            c if c.is_whitespace() && !in_q => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => cur.push(c),
        }
    }
    if in_q {
        bail!("unterminated quote");
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn parse_value(v: &str) -> Result<Vec<u8>> {
    match v.strip_prefix("hex:") {
        Some(h) => hex::decode(h).map_err(|e| anyhow!("bad hex {h:?}: {e}")),
        None => Ok(v.as_bytes().to_vec()),
    }
}

fn check_path(p: &str) -> Result<()> {
    if p.is_empty()
        || p.starts_with('/')
        || p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
    {
        bail!("path {p:?} must be relative and normalized");
    }
    Ok(())
}

impl Fixture {
    /// Parse a description.
    pub fn parse(text: &str) -> Result<Self> {
        let mut f = Fixture {
            timestamp: 1_700_000_000,
            ..Default::default()
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            f.parse_line(line)
                .with_context(|| format!("fixture line {}: {line}", n + 1))?;
        }
        Ok(f)
    }

    fn parse_line(&mut self, line: &str) -> Result<()> {
        let t = tokenize(line)?;
        let (kind, rest) = t.split_first().ok_or_else(|| anyhow!("empty"))?;
        match kind.as_str() {
            "subject" => self.subject = rest.join(" "),
            "timestamp" => {
                self.timestamp = rest
                    .first()
                    .ok_or_else(|| anyhow!("timestamp N"))?
                    .parse()?
            }
            "bootable" => self.bootable = true,
            "meta" => {
                for kv in rest {
                    let (k, v) = kv.split_once('=').ok_or_else(|| anyhow!("meta K=V"))?;
                    self.meta.insert(k.into(), v.into());
                }
            }
            "kernel" => {
                let kver = rest.first().ok_or_else(|| anyhow!("kernel KVER"))?;
                let base = format!("usr/lib/modules/{kver}");
                self.add(
                    &format!("{base}/vmlinuz"),
                    Node::File(format!("fake kernel {kver}\n").into_bytes()),
                    &[],
                )?;
                self.add(
                    &format!("{base}/initramfs.img"),
                    Node::File(format!("fake initramfs {kver}\n").into_bytes()),
                    &[],
                )?;
                self.meta.insert("ostree.linux".into(), kver.clone());
            }
            "dir" | "file" | "link" | "hard" => {
                let (path, opts) = rest
                    .split_first()
                    .ok_or_else(|| anyhow!("{kind} PATH ..."))?;
                let mut target = None;
                let mut content = Vec::new();
                for o in opts {
                    if let Some(v) = o.strip_prefix("target=") {
                        target = Some(v.to_string());
                    } else if let Some(v) = o.strip_prefix("content=") {
                        content = v.as_bytes().to_vec();
                    } else if let Some(v) = o.strip_prefix("from=") {
                        content = std::fs::read(v).with_context(|| format!("reading {v}"))?;
                    } else if let Some(v) = o.strip_prefix("size=") {
                        // Deterministic filler content of a given size.
                        let n: usize = v.parse()?;
                        content = (0..n).map(|i| (i * 7 + n) as u8).collect();
                    }
                }
                let node = match kind.as_str() {
                    "dir" => Node::Dir,
                    "file" => Node::File(content),
                    "link" => Node::Link(target.ok_or_else(|| anyhow!("link needs target="))?),
                    _ => Node::Hard(target.ok_or_else(|| anyhow!("hard needs target="))?),
                };
                self.add(path, node, opts)?;
            }
            o => bail!("unknown entry kind {o:?}"),
        }
        Ok(())
    }

    fn add(&mut self, path: &str, node: Node, opts: &[String]) -> Result<()> {
        check_path(path)?;
        let mut e = Entry {
            uid: 0,
            gid: 0,
            mode: match node {
                Node::Dir => 0o755,
                Node::Link(_) => 0o777,
                _ => 0o644,
            },
            node,
            xattrs: BTreeMap::new(),
        };
        for o in opts {
            if let Some(v) = o.strip_prefix("mode=") {
                e.mode = u32::from_str_radix(v, 8).with_context(|| format!("mode {v}"))?;
            } else if let Some(v) = o.strip_prefix("uid=") {
                e.uid = v.parse()?;
            } else if let Some(v) = o.strip_prefix("gid=") {
                e.gid = v.parse()?;
            } else if let Some(kv) = o.strip_prefix("xattr.") {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| anyhow!("xattr.NAME=VALUE"))?;
                e.xattrs.insert(k.to_string(), parse_value(v)?);
            }
        }
        // Parents.
        let mut acc = String::new();
        for c in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, p)| p)
            .unwrap_or(&[])
        {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(c);
            match self.entries.get(&acc) {
                None => {
                    self.entries.insert(
                        acc.clone(),
                        Entry {
                            node: Node::Dir,
                            uid: 0,
                            gid: 0,
                            mode: 0o755,
                            xattrs: BTreeMap::new(),
                        },
                    );
                }
                Some(Entry {
                    node: Node::Dir, ..
                }) => {}
                Some(_) => bail!("{acc} is not a directory"),
            }
        }
        self.entries.insert(path.to_string(), e);
        Ok(())
    }

    /// Write the commit into `repo` and point `refname` at it; returns the checksum.
    pub fn commit(&self, repo: &ostree::Repo, refname: &str) -> Result<String> {
        let c = gio::Cancellable::NONE;
        repo.prepare_transaction(c)?;
        let r = self.write(repo, refname);
        match r {
            Ok(csum) => {
                repo.commit_transaction(c)?;
                Ok(csum)
            }
            Err(e) => {
                repo.abort_transaction(c).ok();
                Err(e)
            }
        }
    }

    fn write(&self, repo: &ostree::Repo, refname: &str) -> Result<String> {
        let c = gio::Cancellable::NONE;
        let root = ostree::MutableTree::new();
        root.set_metadata_checksum(&dirmeta(repo, 0, 0, 0o755, &BTreeMap::new())?);
        let mut objs: BTreeMap<&str, String> = BTreeMap::new();
        let mut trees: BTreeMap<&str, ostree::MutableTree> = BTreeMap::new();
        trees.insert("", root.clone());
        // Directories first (BTreeMap order puts parents before children), then files, then
        // hardlinks, which need their target's object.
        for pass in 0..3 {
            for (path, e) in &self.entries {
                let wanted = matches!(
                    (&e.node, pass),
                    (Node::Dir, 0) | (Node::File(_) | Node::Link(_), 1) | (Node::Hard(_), 2)
                );
                if !wanted {
                    continue;
                }
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
                let parent = trees
                    .get(dir)
                    .cloned()
                    .ok_or_else(|| anyhow!("fixture: parent of {path} is missing"))?;
                match (&e.node, pass) {
                    (Node::Dir, 0) => {
                        let d = parent.ensure_dir(name)?;
                        d.set_metadata_checksum(&dirmeta(repo, e.uid, e.gid, e.mode, &e.xattrs)?);
                        trees.insert(path, d);
                    }
                    (Node::File(data), 1) => {
                        let csum = repo.write_regfile_inline(
                            None,
                            e.uid,
                            e.gid,
                            libc::S_IFREG | e.mode,
                            Some(&xattrs_variant(&e.xattrs)),
                            data,
                            c,
                        )?;
                        parent.replace_file(name, &csum)?;
                        objs.insert(path, csum.to_string());
                    }
                    (Node::Link(t), 1) => {
                        let csum = repo.write_symlink(
                            None,
                            e.uid,
                            e.gid,
                            Some(&xattrs_variant(&e.xattrs)),
                            t,
                            c,
                        )?;
                        parent.replace_file(name, &csum)?;
                        objs.insert(path, csum.to_string());
                    }
                    (Node::Hard(t), 2) => {
                        let csum = objs
                            .get(t.as_str())
                            .ok_or_else(|| anyhow!("hardlink {path}: target {t} is not a file"))?;
                        parent.replace_file(name, csum)?;
                    }
                    _ => {}
                }
            }
        }
        let rootf = repo.write_mtree(&root, c)?;
        let rootf = rootf
            .downcast_ref::<ostree::RepoFile>()
            .ok_or_else(|| anyhow!("write_mtree did not return a RepoFile"))?;
        let dict = glib::VariantDict::new(None);
        for (k, v) in &self.meta {
            dict.insert_value(k, &v.to_variant());
        }
        if self.bootable {
            dict.insert_value("ostree.bootable", &true.to_variant());
        }
        let md = dict.end();
        let csum = repo.write_commit_with_time(
            None,
            Some(&self.subject),
            None,
            Some(&md),
            rootf,
            self.timestamp,
            c,
        )?;
        repo.transaction_set_ref(None, refname, Some(&csum));
        Ok(csum.to_string())
    }
}

fn xattrs_variant(x: &BTreeMap<String, Vec<u8>>) -> glib::Variant {
    let items: Vec<glib::Variant> = x
        .iter()
        .map(|(k, v)| {
            let mut name = k.as_bytes().to_vec();
            name.push(0);
            glib::Variant::tuple_from_iter([name.to_variant(), v.to_variant()])
        })
        .collect();
    glib::Variant::array_from_iter_with_type(
        glib::VariantTy::new("(ayay)").expect("valid type"),
        items,
    )
}

fn dirmeta(
    repo: &ostree::Repo,
    uid: u32,
    gid: u32,
    mode: u32,
    x: &BTreeMap<String, Vec<u8>>,
) -> Result<String> {
    let fi = gio::FileInfo::new();
    fi.set_attribute_uint32("unix::uid", uid);
    fi.set_attribute_uint32("unix::gid", gid);
    fi.set_attribute_uint32("unix::mode", libc::S_IFDIR | mode);
    let v = ostree::create_directory_metadata(&fi, Some(&xattrs_variant(x)));
    let c = repo.write_metadata(
        ostree::ObjectType::DirMeta,
        None,
        &v,
        gio::Cancellable::NONE,
    )?;
    Ok(c.to_hex())
}

/// Create a `bare` repository at `path` (or open it when it exists).
pub fn create_repo(path: &std::path::Path, mode: ostree::RepoMode) -> Result<ostree::Repo> {
    std::fs::create_dir_all(path)?;
    let repo = ostree::Repo::new(&gio::File::for_path(path));
    if path.join("config").exists() {
        repo.open(gio::Cancellable::NONE)?;
    } else {
        repo.create(mode, gio::Cancellable::NONE)?;
    }
    Ok(repo)
}

/// The built-in sample OS: busybox as the shell, a fake kernel, `/usr/etc`, hardlinks,
/// xattrs (incl. `security.capability`), setuid and empty files, owned by three "packages"
/// via `user.component`.
pub const SAMPLE: &str = include_str!("../fixtures/sample.txt");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_handles_quotes_and_escapes() {
        assert_eq!(
            tokenize(r#"file a content="x y\n\"q\"" mode=0644"#).unwrap(),
            vec!["file", "a", "content=x y\n\"q\"", "mode=0644"]
        );
        assert!(tokenize(r#"file "a"#).is_err());
    }

    #[test]
    fn rejects_bad_paths_and_kinds() {
        assert!(Fixture::parse("file /abs").is_err());
        assert!(Fixture::parse("file a/../b").is_err());
        assert!(Fixture::parse("blob x").is_err());
        assert!(Fixture::parse("file a content=x\nfile a/b").is_err());
    }
}
