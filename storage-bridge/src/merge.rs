//! Layer commits ─▶ one merged tree: the base commit (or an empty root), then each derived
//! layer's commit laid over it in order, in memory ([`MutableTree`]); nothing is checked out.
//!
//! Per directory of a layer, in this order:
//! 1. an opaque marker (`.wh..wh..opq`) hides everything the layers below had there;
//! 2. each whiteout `.wh.NAME` removes NAME of the layers below;
//! 3. the layer's files replace what was there (a directory in the way goes);
//! 4. the layer's directories are merged recursively (a file in the way goes); a directory the
//!    layer named takes its metadata, one it only implied keeps what the layers below gave it.
//!
//! Then hardlinks into lower layers ([`crate::tar::layer_to_tree::LowerLink`]) resolve against the tree so far.
//! Only content checksums move: unchanged subtrees of the base stay as they were loaded.

use crate::commit::Repo;
use crate::layer_cache::LayerMeta;
use crate::mtree;
use crate::tar::layer_to_tree::{PolicyReport, OPAQUE, WH};
use anyhow::{anyhow, Context, Result};
use ostree::MutableTree;
use std::collections::BTreeSet;

/// The tree being merged.
pub struct TreeMerge<'r> {
    repo: &'r Repo,
    pub root: MutableTree,
    default_dirmeta: String,
    /// The path policy's report, summed over the layers applied.
    pub report: PolicyReport,
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

impl<'r> TreeMerge<'r> {
    /// Start from `base` (a commit) or an empty root.
    pub fn new(repo: &'r Repo, base: Option<&str>) -> Result<Self> {
        let default_dirmeta = mtree::default_dirmeta(repo)?;
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

    /// Lay the layer commit `commit` (with its `meta`) over the tree. `layer` names it in
    /// errors.
    pub fn apply_layer(&mut self, commit: &str, meta: &LayerMeta, layer: &str) -> Result<()> {
        let src = MutableTree::from_commit(self.repo, commit)
            .with_context(|| format!("{layer}: loading layer commit {commit}"))?;
        merge_dir(
            &self.root,
            &src,
            "",
            &meta.implicit_dirs,
            &self.default_dirmeta,
        )
        .with_context(|| format!("{layer}: merging"))?;
        for l in &meta.lower_links {
            let csum = mtree::find_file(&self.root, &l.target)?.ok_or_else(|| {
                anyhow!(
                    "{layer}: entry {:?}: hardlink target {:?} is not a file in this layer or below",
                    l.entry,
                    l.target
                )
            })?;
            let (dir, name) = mtree::split(&l.dest);
            let mut t = self.root.clone();
            for c in dir.split('/').filter(|c| !c.is_empty()) {
                t = mtree::ensure_subdir(&t, c, &self.default_dirmeta)?.0;
            }
            mtree::put_file(&t, name, &csum)?;
        }
        self.report.absorb(&meta.policy);
        Ok(())
    }

    /// Remove builder artifacts: zero-length `usr/etc/hostname` and `usr/etc/resolv.conf`.
    pub fn remove_builder_artifacts(&self) -> Result<()> {
        for p in ["usr/etc/hostname", "usr/etc/resolv.conf"] {
            if let Some(c) = mtree::find_file(&self.root, p)? {
                if let Ok(m) = crate::commit::query_file(self.repo, &c) {
                    if m.size == 0 && !m.is_symlink() {
                        mtree::remove(&self.root, p)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn merge_dir(
    dst: &MutableTree,
    src: &MutableTree,
    path: &str,
    implicit: &BTreeSet<String>,
    default_dirmeta: &str,
) -> Result<()> {
    let files = src.copy_files();
    if files.contains_key(OPAQUE) {
        for n in dst.copy_files().keys() {
            dst.remove(n, true)?;
        }
        for n in dst.copy_subdirs().keys() {
            dst.remove(n, true)?;
        }
    }
    for n in files.keys() {
        if let Some(victim) = n.strip_prefix(WH).filter(|_| n.as_str() != OPAQUE) {
            dst.remove(victim, true)?;
        }
    }
    for (n, csum) in &files {
        if !n.starts_with(WH) {
            mtree::put_file(dst, n, csum)?;
        }
    }
    for (n, sub) in src.copy_subdirs() {
        let p = join(path, &n);
        let named = !implicit.contains(&p);
        if !named && only_markers(&sub) {
            // Whiteouts below a directory the layer only implied: they act where that
            // directory exists below, and create nothing (nor replace a file) where not.
            if let Some(d) = mtree::entry(dst, &n)?.1 {
                merge_dir(&d, &sub, &p, implicit, default_dirmeta)?;
            }
            continue;
        }
        let (d, _) = mtree::ensure_subdir(dst, &n, default_dirmeta)?;
        if named {
            d.set_metadata_checksum(&sub.metadata_checksum());
        }
        merge_dir(&d, &sub, &p, implicit, default_dirmeta)?;
    }
    Ok(())
}

/// Whether a layer's directory holds nothing but whiteouts (at any depth).
fn only_markers(t: &MutableTree) -> bool {
    t.copy_files().keys().all(|n| n.starts_with(WH)) && t.copy_subdirs().values().all(only_markers)
}
