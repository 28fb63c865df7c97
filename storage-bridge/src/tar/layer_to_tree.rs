//! A derived (non-ostree) layer's tar ─▶ changes to an in-memory tree ([`MutableTree`]):
//! files, directories, symlinks, hardlinks, `.wh.` whiteouts and opaque directories, with the
//! path policy that maps a container root filesystem onto an ostree commit.
//!
//! Nothing is extracted to disk: every file becomes a content object written through the repo
//! API, every name a tree entry. Path policy (REFERENCE §6), per entry after stripping `./`:
//! - `..` components, empty or non-UTF-8 names: an error naming the layer and the entry;
//! - `usr/…` kept; `etc/…` becomes `usr/etc/…` (hardlink targets too); `var/…` kept;
//! - `run`, `tmp`, `proc`, `sys`, `dev`: the directory is kept, its children dropped;
//! - every other top-level directory (`opt`, `boot`, `srv`, `home`, `root`, `sysroot`, …) dropped;
//! - device nodes, fifos and sockets cannot be stored in ostree: dropped.
//!
//! Everything dropped or remapped is counted per top-level directory with example paths.

use crate::commit::Repo;
use anyhow::{anyhow, bail, Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;
use ostree::MutableTree;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;

/// Top-level directories whose children are dropped (the directory itself is kept).
const EMPTY_DIRS: [&str; 5] = ["run", "tmp", "proc", "sys", "dev"];
/// Example paths kept per report line.
const EXAMPLES: usize = 5;
/// Longest path accepted.
const MAX_PATH: usize = 4096;
const WH: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Per top-level directory: how many entries were dropped or remapped, and some examples.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct PathReportLine {
    pub count: u64,
    pub examples: Vec<String>,
}

/// What the path policy did to an image's derived layers.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PolicyReport {
    /// Dropped entries by top-level directory (or by kind: "device", "fifo", "socket").
    pub dropped: BTreeMap<String, PathReportLine>,
    /// Remapped entries (`etc` → `usr/etc`).
    pub remapped: BTreeMap<String, PathReportLine>,
}

fn note(map: &mut BTreeMap<String, PathReportLine>, key: &str, path: &str) {
    let l = map.entry(key.to_string()).or_default();
    l.count += 1;
    if l.examples.len() < EXAMPLES {
        l.examples.push(format!("/{path}"));
    }
}

/// An entry of a tree: (file checksum, subdirectory); both None when there is no such name.
/// Other failures (e.g. a lazily loaded base dirtree that cannot be read) are errors.
fn entry(t: &MutableTree, name: &str) -> Result<(Option<String>, Option<MutableTree>)> {
    match t.lookup(name) {
        Ok((f, d)) => Ok((f.map(|s| s.to_string()), d)),
        Err(e) if e.matches(gio::IOErrorEnum::NotFound) => Ok((None, None)),
        Err(e) => Err(anyhow!("looking up {name:?}: {e}")),
    }
}

/// Record `p` and every directory above it as written by the current layer.
fn mark_added(added: &mut HashSet<String>, p: String) {
    let mut cur = p.as_str();
    while let Some((parent, _)) = cur.rsplit_once('/') {
        if !added.insert(parent.to_string()) {
            break;
        }
        cur = parent;
    }
    added.insert(p);
}

/// Where an entry goes.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    Keep(String),
    Drop(&'static str),
}

/// Normalize a tar path: no leading `/` or `./`, no empty, `.` or `..` components.
fn normalize(raw: &str) -> Result<String, &'static str> {
    if raw.len() > MAX_PATH {
        return Err("the path is longer than 4096 bytes");
    }
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => continue,
            ".." => return Err("a `..` component (paths must stay inside the image)"),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// The path policy; `p` is normalized and not empty.
fn place(p: &str) -> Place {
    let (top, rest) = p.split_once('/').unwrap_or((p, ""));
    match top {
        "usr" | "var" => Place::Keep(p.to_string()),
        "etc" => Place::Keep(if rest.is_empty() {
            "usr/etc".to_string()
        } else {
            format!("usr/etc/{rest}")
        }),
        t if EMPTY_DIRS.contains(&t) => {
            if rest.is_empty() {
                Place::Keep(p.to_string())
            } else {
                Place::Drop("children of run, tmp, proc, sys, dev")
            }
        }
        _ => Place::Drop("top-level directory outside usr, etc, var"),
    }
}

/// The in-memory tree being merged, with helpers to walk it by path.
pub struct TreeMerge<'r> {
    repo: &'r Repo,
    pub root: MutableTree,
    default_dirmeta: String,
    pub report: PolicyReport,
}

fn dirmeta_variant(uid: u32, gid: u32, mode: u32, xattrs: &glib::Variant) -> glib::Variant {
    let fi = gio::FileInfo::new();
    fi.set_attribute_uint32("unix::uid", uid);
    fi.set_attribute_uint32("unix::gid", gid);
    fi.set_attribute_uint32("unix::mode", libc::S_IFDIR | (mode & 0o7777));
    ostree::create_directory_metadata(&fi, Some(xattrs))
}

fn empty_xattrs() -> glib::Variant {
    glib::Variant::array_from_iter_with_type(
        glib::VariantTy::new("(ayay)").expect("type"),
        Vec::<glib::Variant>::new(),
    )
}

fn pax_xattrs(entry: &mut tar::Entry<'_, impl Read>) -> Result<glib::Variant> {
    Ok(super::pax_xattrs(entry)?.unwrap_or_else(empty_xattrs))
}

impl<'r> TreeMerge<'r> {
    /// Start from `base` (a commit) or an empty root.
    pub fn new(repo: &'r Repo, base: Option<&str>) -> Result<Self> {
        let default_dirmeta = repo
            .write_metadata(
                ostree::ObjectType::DirMeta,
                None,
                &dirmeta_variant(0, 0, 0o755, &empty_xattrs()),
                gio::Cancellable::NONE,
            )?
            .to_hex();
        let root = match base {
            Some(c) => MutableTree::from_commit(repo, c)
                .with_context(|| format!("loading base commit {c}"))?,
            None => {
                let t = MutableTree::new();
                t.set_metadata_checksum(&default_dirmeta);
                t
            }
        };
        Ok(TreeMerge {
            repo,
            root,
            default_dirmeta,
            report: PolicyReport::default(),
        })
    }

    /// The directory at `path` ("" = root), created with default metadata where missing
    /// (a file in the way is replaced).
    fn ensure_dir_path(&self, path: &str) -> Result<MutableTree> {
        let mut t = self.root.clone();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            let (file, sub) = entry(&t, c)?;
            t = match sub {
                Some(s) => s,
                None => {
                    if file.is_some() {
                        t.remove(c, false)?;
                    }
                    let d = t.ensure_dir(c)?;
                    d.set_metadata_checksum(&self.default_dirmeta);
                    d
                }
            };
        }
        Ok(t)
    }

    /// The directory at `path` when it exists.
    fn find_dir(&self, path: &str) -> Result<Option<MutableTree>> {
        let mut t = self.root.clone();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            match entry(&t, c)?.1 {
                Some(s) => t = s,
                None => return Ok(None),
            }
        }
        Ok(Some(t))
    }

    /// The content checksum of the file at `path` in the tree.
    fn find_file(&self, path: &str) -> Result<Option<String>> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        match self.find_dir(dir)? {
            Some(d) => Ok(entry(&d, name)?.0),
            None => Ok(None),
        }
    }

    fn put_file(&self, path: &str, csum: &str) -> Result<()> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let d = self.ensure_dir_path(dir)?;
        if entry(&d, name)?.1.is_some() {
            d.remove(name, false)?;
        }
        d.replace_file(name, csum)?;
        Ok(())
    }

    fn remove(&self, path: &str) -> Result<()> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if let Some(d) = self.find_dir(dir)? {
            d.remove(name, true)?;
        }
        Ok(())
    }

    /// Apply one derived layer. `layer` names it in errors.
    pub fn apply_layer(&mut self, tar: impl Read, layer: &str) -> Result<()> {
        let mut ar = tar::Archive::new(super::guard::TarGuard::new(tar));
        // Paths this layer wrote (an opaque marker hides only what lower layers had).
        let mut added: HashSet<String> = HashSet::new();
        // Regular files of this layer by tar path (hardlink targets, kept or not).
        let mut written: HashMap<String, String> = HashMap::new();
        // Hardlinks whose target is not known yet, by destination: (entry, target).
        let mut pending_links: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (i, entry) in ar
            .entries()
            .with_context(|| format!("{layer}: reading tar"))?
            .enumerate()
        {
            let mut entry = entry.with_context(|| format!("{layer}: tar entry {i}"))?;
            let raw = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).to_string();
            let ctx = |rule: &str| anyhow!("{layer}: entry {shown:?}: {rule}");
            let raw = std::str::from_utf8(&raw).map_err(|_| ctx("the path is not UTF-8"))?;
            let norm = normalize(raw).map_err(ctx)?;
            let kind = entry.header().entry_type();
            if norm.is_empty() {
                // The root directory itself.
                continue;
            }
            let (dir, name) = norm.rsplit_once('/').unwrap_or(("", norm.as_str()));
            // Whiteouts.
            if name == OPAQUE {
                match place(if dir.is_empty() { "." } else { dir }) {
                    Place::Keep(d) => self.apply_opaque(&d, &added)?,
                    Place::Drop(_) if dir.is_empty() => bail!(ctx(
                        "an opaque marker at the root would hide the whole base"
                    )),
                    Place::Drop(_) => {}
                }
                continue;
            }
            if let Some(target) = name.strip_prefix(WH) {
                if target.is_empty() || target == "." || target == ".." || target.starts_with(WH) {
                    bail!(ctx("malformed whiteout name"));
                }
                let victim = if dir.is_empty() {
                    target.to_string()
                } else {
                    format!("{dir}/{target}")
                };
                // A whiteout hides lower layers only, not this layer's own entries.
                if let Place::Keep(v) = place(&victim) {
                    if !added.contains(&v) {
                        self.remove(&v).map_err(|e| ctx(&format!("{e:#}")))?;
                    }
                }
                continue;
            }
            let dest = match place(&norm) {
                Place::Keep(d) => {
                    if d != norm {
                        note(&mut self.report.remapped, "etc → usr/etc", &norm);
                    }
                    Some(d)
                }
                Place::Drop(_) => {
                    let top = norm.split('/').next().unwrap_or("");
                    if !kind.is_dir() {
                        note(&mut self.report.dropped, top, &norm);
                    }
                    None
                }
            };
            let h = entry.header().clone();
            let uid: u32 = h.uid()?.try_into().map_err(|_| ctx("uid beyond 32 bits"))?;
            let gid: u32 = h.gid()?.try_into().map_err(|_| ctx("gid beyond 32 bits"))?;
            let mode = h.mode()? & 0o7777;
            match kind {
                tar::EntryType::Directory => {
                    let Some(d) = dest else { continue };
                    let xattrs = pax_xattrs(&mut entry).map_err(|e| ctx(&e.to_string()))?;
                    let t = self.ensure_dir_path(&d)?;
                    let m = self
                        .repo
                        .write_metadata(
                            ostree::ObjectType::DirMeta,
                            None,
                            &dirmeta_variant(uid, gid, mode, &xattrs),
                            gio::Cancellable::NONE,
                        )?
                        .to_hex();
                    t.set_metadata_checksum(&m);
                    {
                        pending_links.remove(&d);
                        mark_added(&mut added, d);
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let xattrs = pax_xattrs(&mut entry).map_err(|e| ctx(&e.to_string()))?;
                    let size = h.size()?;
                    let w = self.repo.write_regfile(
                        None,
                        uid,
                        gid,
                        libc::S_IFREG | mode,
                        size,
                        Some(&xattrs),
                    )?;
                    let out = w.clone().upcast::<gio::OutputStream>();
                    let mut buf = vec![0u8; 1 << 17];
                    let mut total = 0u64;
                    loop {
                        let n = entry
                            .read(&mut buf)
                            .map_err(|e| ctx(&format!("reading content: {e}")))?;
                        if n == 0 {
                            break;
                        }
                        out.write_all(&buf[..n], gio::Cancellable::NONE)?;
                        total += n as u64;
                    }
                    if total != size {
                        bail!(ctx(&format!(
                            "content is {total} bytes, header says {size}"
                        )));
                    }
                    let csum = w.finish(gio::Cancellable::NONE)?.to_string();
                    written.insert(norm.clone(), csum.clone());
                    if let Some(d) = dest {
                        self.put_file(&d, &csum)?;
                        {
                            pending_links.remove(&d);
                            mark_added(&mut added, d);
                        }
                    }
                }
                tar::EntryType::Symlink => {
                    let Some(d) = dest else { continue };
                    let xattrs = pax_xattrs(&mut entry).map_err(|e| ctx(&e.to_string()))?;
                    let target = entry
                        .link_name_bytes()
                        .ok_or_else(|| ctx("symlink without target"))?;
                    let target = std::str::from_utf8(&target)
                        .map_err(|_| ctx("symlink target is not UTF-8"))?
                        .to_string();
                    if target.is_empty() {
                        bail!(ctx("empty symlink target"));
                    }
                    let csum = self.repo.write_symlink(
                        None,
                        uid,
                        gid,
                        Some(&xattrs),
                        &target,
                        gio::Cancellable::NONE,
                    )?;
                    self.put_file(&d, &csum)?;
                    {
                        pending_links.remove(&d);
                        mark_added(&mut added, d);
                    }
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .ok_or_else(|| ctx("hardlink without target"))?;
                    let target = std::str::from_utf8(&target)
                        .map_err(|_| ctx("hardlink target is not UTF-8"))?;
                    let t = normalize(target).map_err(|r| ctx(&format!("hardlink target: {r}")))?;
                    if t.is_empty() {
                        bail!(ctx("hardlink to the root directory"));
                    }
                    if let Some(d) = dest {
                        // Resolve now, against what the stream has said so far; only a target
                        // that has not appeared yet waits for the end of the layer.
                        match self
                            .resolve_link(&t, &written)
                            .map_err(|e| ctx(&format!("{e:#}")))?
                        {
                            Some(c) => {
                                self.put_file(&d, &c).map_err(|e| ctx(&format!("{e:#}")))?;
                                pending_links.remove(&d);
                            }
                            None => {
                                pending_links.insert(d.clone(), (norm.clone(), t));
                            }
                        }
                        mark_added(&mut added, d);
                    }
                }
                tar::EntryType::Char | tar::EntryType::Block => {
                    note(&mut self.report.dropped, "device", &norm)
                }
                tar::EntryType::Fifo => note(&mut self.report.dropped, "fifo", &norm),
                tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink => {}
                other => bail!(ctx(&format!("unsupported tar entry type {other:?}"))),
            }
        }
        // Hardlinks last: their targets may come later in the stream, or from lower layers.
        for (dest, (from, target)) in pending_links {
            let csum = self
                .resolve_link(&target, &written)?
                .ok_or_else(|| anyhow!("{layer}: entry {from:?}: hardlink target {target:?} is not a file in this layer or below"))?;
            self.put_file(&dest, &csum)?;
        }
        Ok(())
    }

    fn resolve_link(
        &self,
        target: &str,
        written: &HashMap<String, String>,
    ) -> Result<Option<String>> {
        if let Some(c) = written.get(target) {
            return Ok(Some(c.clone()));
        }
        match place(target) {
            Place::Keep(t) => self.find_file(&t),
            Place::Drop(_) => Ok(None),
        }
    }

    /// Hide everything lower layers had in `dir`: entries this layer added (and the
    /// directories above them) stay, lower content inside them goes.
    fn apply_opaque(&self, dir: &str, added: &HashSet<String>) -> Result<()> {
        let Some(t) = self.find_dir(dir)? else {
            return Ok(());
        };
        let mut todo = vec![(t, dir.to_string())];
        while let Some((t, dir)) = todo.pop() {
            let prefix = if dir.is_empty() {
                String::new()
            } else {
                format!("{dir}/")
            };
            let files = t.copy_files();
            for n in files.keys() {
                if !added.contains(&format!("{prefix}{n}")) {
                    t.remove(n, true)?;
                }
            }
            for (n, sub) in t.copy_subdirs() {
                let p = format!("{prefix}{n}");
                if added.contains(&p) {
                    todo.push((sub, p));
                } else {
                    t.remove(&n, true)?;
                }
            }
        }
        Ok(())
    }

    /// Remove builder artifacts: zero-length `usr/etc/hostname` and `usr/etc/resolv.conf`.
    pub fn remove_builder_artifacts(&self, added_by_layers: bool) -> Result<()> {
        if !added_by_layers {
            return Ok(());
        }
        for p in ["usr/etc/hostname", "usr/etc/resolv.conf"] {
            if let Some(c) = self.find_file(p)? {
                if let Ok(m) = crate::commit::query_file(self.repo, &c) {
                    if m.size == 0 && !m.is_symlink() {
                        self.remove(p)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_rejects_escapes() {
        assert_eq!(normalize("./usr//bin/./sh").unwrap(), "usr/bin/sh");
        assert_eq!(normalize("/etc/x").unwrap(), "etc/x");
        assert!(normalize("usr/../../x").is_err());
        assert!(normalize(&"a/".repeat(3000)).is_err());
    }

    #[test]
    fn path_policy() {
        assert_eq!(place("usr/bin/sh"), Place::Keep("usr/bin/sh".into()));
        assert_eq!(place("etc/passwd"), Place::Keep("usr/etc/passwd".into()));
        assert_eq!(place("etc"), Place::Keep("usr/etc".into()));
        assert_eq!(place("var/lib/x"), Place::Keep("var/lib/x".into()));
        assert_eq!(place("tmp"), Place::Keep("tmp".into()));
        assert!(matches!(place("tmp/x"), Place::Drop(_)));
        assert!(matches!(place("opt/app"), Place::Drop(_)));
        assert!(matches!(
            place("sysroot/ostree/repo/objects/aa/b.file"),
            Place::Drop(_)
        ));
    }
}
