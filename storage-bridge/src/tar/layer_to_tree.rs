//! A derived (non-ostree) layer's tar ─▶ a tree of its own ([`MutableTree`]) that the layer
//! cache stores as one commit and [`crate::merge`] lays over the layers below it.
//!
//! Nothing is extracted to disk: every file becomes a content object written through the repo
//! API, every name a tree entry. Whiteouts stay in the layer's tree as empty files named
//! `.wh.NAME` (and `.wh..wh..opq`), placed where the path policy puts their victim, so the
//! merge applies them to the layers below. Path policy (REFERENCE §6), per entry after
//! stripping `./`:
//! - `..` components, empty or non-UTF-8 names: an error naming the layer and the entry;
//! - `usr/…` kept; `etc/…` becomes `usr/etc/…` (hardlink targets too); `var/…` kept;
//! - `run`, `tmp`, `proc`, `sys`, `dev`: the directory is kept, its children dropped;
//! - every other top-level directory (`opt`, `boot`, `srv`, `home`, `root`, `sysroot`, …) dropped;
//! - device nodes, fifos and sockets cannot be stored in ostree: dropped.
//!
//! Everything dropped or remapped is counted per top-level directory with example paths.
//! Hardlinks resolve against the layer's own stream (in any order); a target the layer does
//! not hold is a link to a lower layer, resolved by the merge ([`LowerLink`]).

use crate::commit::Repo;
use crate::mtree;
use anyhow::{anyhow, bail, Context, Result};
use ostree::gio;
use ostree::prelude::*;
use ostree::MutableTree;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

/// Top-level directories whose children are dropped (the directory itself is kept).
const EMPTY_DIRS: [&str; 5] = ["run", "tmp", "proc", "sys", "dev"];
/// Example paths kept per report line.
const EXAMPLES: usize = 5;
/// Longest path accepted.
const MAX_PATH: usize = 4096;
/// Prefix of a whiteout's name.
pub const WH: &str = ".wh.";
/// The opaque-directory marker.
pub const OPAQUE: &str = ".wh..wh..opq";

/// Per top-level directory: how many entries were dropped or remapped, and some examples.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PathReportLine {
    pub count: u64,
    pub examples: Vec<String>,
}

/// What the path policy did to an image's derived layers.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PolicyReport {
    /// Dropped entries by top-level directory (or by kind: "device", "fifo", "socket").
    pub dropped: BTreeMap<String, PathReportLine>,
    /// Remapped entries (`etc` → `usr/etc`).
    pub remapped: BTreeMap<String, PathReportLine>,
}

impl PolicyReport {
    /// Add another layer's report to this one (examples up to the usual number).
    pub fn absorb(&mut self, other: &PolicyReport) {
        for (mine, theirs) in [
            (&mut self.dropped, &other.dropped),
            (&mut self.remapped, &other.remapped),
        ] {
            for (k, l) in theirs {
                let m = mine.entry(k.clone()).or_default();
                m.count += l.count;
                for e in &l.examples {
                    if m.examples.len() < EXAMPLES {
                        m.examples.push(e.clone());
                    }
                }
            }
        }
    }
}

fn note(map: &mut BTreeMap<String, PathReportLine>, key: &str, path: &str) {
    let l = map.entry(key.to_string()).or_default();
    l.count += 1;
    if l.examples.len() < EXAMPLES {
        l.examples.push(format!("/{path}"));
    }
}

/// A hardlink whose target is not in its own layer: the merge resolves it against the layers
/// below.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LowerLink {
    /// Where the link goes (after the path policy).
    pub dest: String,
    /// The tar entry, as the layer named it (for errors).
    pub entry: String,
    /// The target (after the path policy).
    pub target: String,
}

/// A derived layer as a tree of its own, with what the merge needs besides the tree.
#[derive(Debug)]
pub struct LayerTree {
    pub root: MutableTree,
    /// Directories the layer did not name (created as parents of its entries): the merge keeps
    /// the metadata the layers below gave them.
    pub implicit_dirs: BTreeSet<String>,
    pub lower_links: Vec<LowerLink>,
    pub policy: PolicyReport,
    /// The path policy the layer was read with.
    pub path_policy: PathPolicy,
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
    if raw.contains('\0') {
        return Err("a NUL byte in the path");
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

/// What the base allows besides `usr`, `etc` and `var` (REFERENCE §6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PathPolicy {
    /// The base boots with composefs or a transient root (`usr/lib/ostree/prepare-root.conf`):
    /// the commit's own root is what the system sees, so other top-level directories (`opt`,
    /// `srv`, `home`, …) are kept. `boot` and `sysroot` stay dropped (mount points of the
    /// host), and `run`, `tmp`, `proc`, `sys`, `dev` stay empty.
    pub keep_toplevel: bool,
}

/// Top-level directories dropped whatever the base allows.
const ALWAYS_DROPPED: [&str; 2] = ["boot", "sysroot"];

impl PathPolicy {
    /// The policy a base commit's `prepare-root.conf` (its text) asks for.
    pub fn from_prepare_root(conf: &str) -> Self {
        let mut section = String::new();
        let mut keep = false;
        for line in conf.lines().map(str::trim) {
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.trim().to_string();
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().to_ascii_lowercase();
            let on = matches!(v.as_str(), "yes" | "true" | "1" | "signed" | "maybe");
            match (section.as_str(), k.trim()) {
                ("composefs", "enabled") | ("root", "transient") if on => keep = true,
                _ => {}
            }
        }
        PathPolicy {
            keep_toplevel: keep,
        }
    }
}

/// The default path policy; `p` is normalized and not empty.
#[cfg(any(test, feature = "fuzzing"))]
fn place(p: &str) -> Place {
    place_with(p, PathPolicy::default())
}

fn place_with(p: &str, policy: PathPolicy) -> Place {
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
        t if policy.keep_toplevel && t != "." && !ALWAYS_DROPPED.contains(&t) => {
            Place::Keep(p.to_string())
        }
        _ => Place::Drop("top-level directory outside usr, etc, var"),
    }
}

/// The path policy applied to a raw tar path, for the fuzz targets: the normalized path and
/// where it goes (None: dropped), or the rule that refuses it.
#[cfg(feature = "fuzzing")]
pub fn fuzz_path_policy(raw: &str) -> Result<(String, Option<String>), &'static str> {
    let norm = normalize(raw)?;
    let kept = match place(&norm) {
        Place::Keep(p) => Some(p),
        Place::Drop(_) => None,
    };
    Ok((norm, kept))
}

/// Builds one layer's tree from its tar stream.
struct Builder<'r> {
    repo: &'r Repo,
    default_dirmeta: String,
    /// The empty file that stands for a whiteout, written once.
    marker: Option<String>,
    tree: LayerTree,
}

fn pax_xattrs(entry: &mut tar::Entry<'_, impl Read>) -> Result<ostree::glib::Variant> {
    Ok(super::pax_xattrs(entry)?.unwrap_or_else(mtree::empty_xattrs))
}

/// `dir/name`, or `name` at the root.
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

impl Builder<'_> {
    /// The directory at `path` in the layer's tree, created where missing (and then implicit:
    /// the layer did not name it).
    fn dir(&mut self, path: &str) -> Result<MutableTree> {
        let mut t = self.tree.root.clone();
        let mut cur = String::new();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            cur = join(&cur, c);
            let (d, created) = mtree::ensure_subdir(&t, c, &self.default_dirmeta)?;
            if created {
                self.tree.implicit_dirs.insert(cur.clone());
            }
            t = d;
        }
        Ok(t)
    }

    fn put_file(&mut self, path: &str, csum: &str) -> Result<()> {
        let (dir, name) = mtree::split(path);
        let d = self.dir(dir)?;
        mtree::put_file(&d, name, csum)?;
        // A file replacing a directory this layer had implied.
        let prefix = format!("{path}/");
        self.tree
            .implicit_dirs
            .retain(|p| p != path && !p.starts_with(&prefix));
        Ok(())
    }

    /// Record a whiteout (or, with `OPAQUE`, an opaque marker) named `name` in `dir`.
    fn put_marker(&mut self, dir: &str, name: &str) -> Result<()> {
        let m = match &self.marker {
            Some(m) => m.clone(),
            None => {
                let m = self
                    .repo
                    .write_regfile_inline(
                        None,
                        0,
                        0,
                        libc::S_IFREG | 0o644,
                        None,
                        &[],
                        gio::Cancellable::NONE,
                    )?
                    .to_string();
                self.marker = Some(m.clone());
                m
            }
        };
        let d = self.dir(dir)?;
        mtree::put_file(&d, name, &m)
    }
}

/// Parse one derived layer's tar into its own tree, with the default path policy. `layer`
/// names it in errors.
pub fn layer_to_tree(repo: &Repo, tar: impl Read, layer: &str) -> Result<LayerTree> {
    layer_to_tree_with(repo, tar, layer, PathPolicy::default())
}

/// [`layer_to_tree`] with the path policy the base asks for.
pub fn layer_to_tree_with(
    repo: &Repo,
    tar: impl Read,
    layer: &str,
    policy: PathPolicy,
) -> Result<LayerTree> {
    let default_dirmeta = mtree::default_dirmeta(repo)?;
    let root = MutableTree::new();
    root.set_metadata_checksum(&default_dirmeta);
    let mut b = Builder {
        repo,
        default_dirmeta,
        marker: None,
        tree: LayerTree {
            root,
            implicit_dirs: BTreeSet::new(),
            lower_links: Vec::new(),
            policy: PolicyReport::default(),
            path_policy: policy,
        },
    };
    let mut ar = tar::Archive::new(super::guard::TarGuard::new(tar));
    // Regular files of this layer by tar path (hardlink targets, kept or not).
    let mut written: HashMap<String, String> = HashMap::new();
    // Hardlinks whose target has not appeared yet, by destination: (entry, target).
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
            if kind.is_dir() {
                // The root directory itself.
                continue;
            }
            bail!(ctx(
                "an entry with an empty path (the root) that is not a directory"
            ));
        }
        let (dir, name) = mtree::split(&norm);
        if dir.split('/').any(|c| c.starts_with(WH)) {
            bail!(ctx("a whiteout name used as a directory"));
        }
        // Whiteouts: kept as markers where the policy puts their victim.
        if name == OPAQUE {
            match place_with(if dir.is_empty() { "." } else { dir }, policy) {
                Place::Keep(d) => b.put_marker(&d, OPAQUE)?,
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
            if let Place::Keep(v) = place_with(&join(dir, target), policy) {
                let (vdir, vname) = mtree::split(&v);
                b.put_marker(vdir, &format!("{WH}{vname}"))
                    .map_err(|e| ctx(&format!("{e:#}")))?;
            }
            continue;
        }
        let dest = match place_with(&norm, policy) {
            Place::Keep(d) => {
                if d != norm {
                    note(&mut b.tree.policy.remapped, "etc → usr/etc", &norm);
                }
                Some(d)
            }
            Place::Drop(_) => {
                let top = norm.split('/').next().unwrap_or("");
                if !kind.is_dir() {
                    note(&mut b.tree.policy.dropped, top, &norm);
                }
                None
            }
        };
        let h = entry.header().clone();
        let field = |e: std::io::Error| ctx(&format!("bad header field: {e}"));
        let uid: u32 = h
            .uid()
            .map_err(field)?
            .try_into()
            .map_err(|_| ctx("uid beyond 32 bits"))?;
        let gid: u32 = h
            .gid()
            .map_err(field)?
            .try_into()
            .map_err(|_| ctx("gid beyond 32 bits"))?;
        if uid == u32::MAX || gid == u32::MAX {
            // chown reads -1 as "leave as is": the object would not be what its checksum says.
            bail!(ctx("uid or gid 4294967295 cannot be stored"));
        }
        let mode = h.mode().map_err(field)? & 0o7777;
        match kind {
            tar::EntryType::Directory => {
                let Some(d) = dest else { continue };
                let xattrs = pax_xattrs(&mut entry).map_err(|e| ctx(&e.to_string()))?;
                let t = b.dir(&d)?;
                let m = repo
                    .write_metadata(
                        ostree::ObjectType::DirMeta,
                        None,
                        &mtree::dirmeta_variant(uid, gid, mode, &xattrs),
                        gio::Cancellable::NONE,
                    )?
                    .to_hex();
                t.set_metadata_checksum(&m);
                b.tree.implicit_dirs.remove(&d);
                pending_links.remove(&d);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let xattrs = pax_xattrs(&mut entry).map_err(|e| ctx(&e.to_string()))?;
                let size = entry.header().size().map_err(field)?;
                let w = repo
                    .write_regfile(None, uid, gid, libc::S_IFREG | mode, size, Some(&xattrs))
                    .map_err(|e| ctx(&format!("writing content: {e}")))?;
                let out = w.clone().upcast::<gio::OutputStream>();
                super::copy_content(&mut entry, &out, size).map_err(|r| ctx(&r))?;
                let csum = w
                    .finish(gio::Cancellable::NONE)
                    .map_err(|e| ctx(&format!("writing content: {e}")))?
                    .to_string();
                written.insert(norm.clone(), csum.clone());
                if let Some(d) = dest {
                    b.put_file(&d, &csum)?;
                    pending_links.remove(&d);
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
                if target.contains('\0') {
                    bail!(ctx("a NUL byte in the symlink target"));
                }
                let csum = repo.write_symlink(
                    None,
                    uid,
                    gid,
                    Some(&xattrs),
                    &target,
                    gio::Cancellable::NONE,
                )?;
                b.put_file(&d, &csum)?;
                pending_links.remove(&d);
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
                    // Resolve now, against what the stream has said so far; a target that
                    // has not appeared yet waits for the end of the layer.
                    match written.get(&t) {
                        Some(c) => {
                            let c = c.clone();
                            b.put_file(&d, &c).map_err(|e| ctx(&format!("{e:#}")))?;
                            pending_links.remove(&d);
                        }
                        None => {
                            pending_links.insert(d, (norm.clone(), t));
                        }
                    }
                }
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                note(&mut b.tree.policy.dropped, "device", &norm)
            }
            tar::EntryType::Fifo => note(&mut b.tree.policy.dropped, "fifo", &norm),
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            other => bail!(ctx(&format!("unsupported tar entry type {other:?}"))),
        }
    }
    // Hardlinks to targets later in the stream; the rest point into lower layers.
    for (dest, (from, target)) in pending_links {
        if let Some(c) = written.get(&target) {
            b.put_file(&dest, &c.clone())?;
            continue;
        }
        match place_with(&target, policy) {
            Place::Keep(t) => b.tree.lower_links.push(LowerLink {
                dest,
                entry: from,
                target: t,
            }),
            Place::Drop(_) => bail!(
                "{layer}: entry {from:?}: hardlink target {target:?} is not a file in this layer or below"
            ),
        }
    }
    Ok(b.tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `bare-user` repository in a temporary directory, in a transaction.
    fn temp_repo() -> (tempfile::TempDir, Repo) {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::new(&gio::File::for_path(d.path()));
        repo.create(ostree::RepoMode::BareUser, gio::Cancellable::NONE)
            .unwrap();
        repo.prepare_transaction(gio::Cancellable::NONE).unwrap();
        (d, repo)
    }

    /// A layer with one symlink at `usr/l` whose target comes from a PAX `linkpath`.
    fn symlink_layer(target: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("linkpath", target)]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "usr/l", "x").unwrap();
        b.into_inner().unwrap()
    }

    /// Found by the `tar_to_tree` fuzz target: a GNU long link or PAX `linkpath` can hold a
    /// NUL, which the ostree bindings cannot pass to C (they panicked).
    #[test]
    fn refuses_nul_in_symlink_targets() {
        let (_d, repo) = temp_repo();
        let e = layer_to_tree(&repo, symlink_layer(b"\0x").as_slice(), "layer 1").unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e:#}");
        let t = layer_to_tree(&repo, symlink_layer(b"../x").as_slice(), "layer 1").unwrap();
        assert!(mtree::find_file(&t.root, "usr/l").unwrap().is_some());
    }

    #[test]
    fn normalizes_and_rejects_escapes() {
        assert_eq!(normalize("./usr//bin/./sh").unwrap(), "usr/bin/sh");
        assert_eq!(normalize("/etc/x").unwrap(), "etc/x");
        assert!(normalize("usr/../../x").is_err());
        assert!(normalize(&"a/".repeat(3000)).is_err());
    }

    /// Found by the `tar_to_tree` fuzz target: a GNU long name (or PAX path) can carry a NUL,
    /// which reached MutableTree::lookup, whose bindings panicked on it.
    #[test]
    fn refuses_nul_in_paths() {
        assert!(normalize("usr/a\0b").is_err());
        let (_d, repo) = temp_repo();
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("path", &b"usr/bin/a\0b/c"[..])])
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mode(0o644);
        b.append_data(&mut h, "usr/x", std::io::empty()).unwrap();
        let tar = b.into_inner().unwrap();
        let e = layer_to_tree(&repo, tar.as_slice(), "layer 1").unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e:#}");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        h.set_mode(0o644);
        b.append_pax_extensions([("linkpath", &b"usr/a\0"[..])])
            .unwrap();
        b.append_link(&mut h, "usr/l", "x").unwrap();
        let tar = b.into_inner().unwrap();
        let e = layer_to_tree(&repo, tar.as_slice(), "layer 1").unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e:#}");
    }

    #[test]
    fn prepare_root_conf_opens_the_toplevel() {
        for (conf, keep) in [
            ("[composefs]\nenabled = yes\n", true),
            ("[composefs]\nenabled=signed\n", true),
            (
                "[composefs]\nenabled = no\n[root]\ntransient = false\n",
                false,
            ),
            ("[root]\ntransient = true\n", true),
            ("# [composefs]\n[sysroot]\nenabled = yes\n", false),
            ("", false),
        ] {
            assert_eq!(
                PathPolicy::from_prepare_root(conf).keep_toplevel,
                keep,
                "{conf}"
            );
        }
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
        let open = PathPolicy {
            keep_toplevel: true,
        };
        assert_eq!(place_with("opt/app", open), Place::Keep("opt/app".into()));
        assert!(matches!(place_with("boot/vmlinuz", open), Place::Drop(_)));
        assert!(matches!(place_with("sysroot/x", open), Place::Drop(_)));
        assert!(matches!(place_with("tmp/x", open), Place::Drop(_)));
        assert_eq!(place_with("etc/x", open), Place::Keep("usr/etc/x".into()));
        assert!(matches!(
            place("sysroot/ostree/repo/objects/aa/b.file"),
            Place::Drop(_)
        ));
    }
}
