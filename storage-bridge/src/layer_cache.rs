//! The layer cache: one commit per imported layer under `ostree/container/blob/<escaped digest>`,
//! keyed by the layer's diff_id (the digest of its uncompressed tar), with the blob digest as
//! an alias when the two differ.
//!
//! ```text
//! commit layer   ─▶ the image's ostree commit itself
//! chunk layer    ─▶ an "object set" commit: one file per content object, named by its checksum
//! derived layer  ─▶ the layer's own tree (whiteouts kept as `.wh.` markers), see tar/layer_to_tree
//! ```
//! Keying by diff_id makes a layer found whatever compression or transport named it: podman
//! names a base layer by its diff_id where the base image named it by its gzip digest.
//! A ref is set only inside the import's transaction, after the layer's blob digest, size and
//! diff_id were verified; a cached commit is trusted only when it carries this importer's
//! [`LayerMeta`] of the expected kind and format (another tool's refs in the same namespace are
//! read as absent and replaced).

use crate::commit::{open_repo, Repo};
use crate::pipeline::images::unescape_ref;
use crate::pipeline::pull::escape_ref;
use crate::tar::layer_to_tree::{LayerTree, LowerLink, PathPolicy, PolicyReport};
use anyhow::{anyhow, Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;
use std::collections::{BTreeSet, HashSet};
use std::path::Path;

/// Prefix of the layer refs.
pub const BLOB_REF_PREFIX: &str = "ostree/container/blob/";
/// Commit metadata key holding a layer commit's [`LayerMeta`] (JSON).
pub const LAYER_META: &str = "ostree-bridge.layer";
/// Version of the layer commit format; a cached commit of another version is not used.
pub const LAYER_FORMAT: u32 = 1;

/// What a layer commit holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    /// A derived layer's tree.
    Tree,
    /// The content objects of an ostree chunk layer.
    Objects,
}

/// Stored with every layer commit this importer writes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LayerMeta {
    pub format: u32,
    pub kind: LayerKind,
    #[serde(default)]
    pub implicit_dirs: BTreeSet<String>,
    #[serde(default)]
    pub lower_links: Vec<LowerLink>,
    #[serde(default)]
    pub policy: PolicyReport,
    /// The path policy a derived layer was read with: another base may ask for another.
    #[serde(default)]
    pub path_policy: PathPolicy,
}

/// The ref of a layer known by `digest` (a diff_id or a blob digest).
pub fn blob_ref(digest: &str) -> String {
    format!("{BLOB_REF_PREFIX}{}", escape_ref(digest))
}

/// A layer commit's metadata, when it is one of ours.
pub fn read_meta(repo: &Repo, commit: &str) -> Result<Option<LayerMeta>> {
    let (c, state) = repo
        .load_commit(commit)
        .with_context(|| format!("loading layer commit {commit}"))?;
    if state.contains(ostree::RepoCommitState::PARTIAL) {
        return Ok(None);
    }
    let s = glib::VariantDict::new(Some(&c.child_value(0)))
        .lookup::<String>(LAYER_META)
        .ok()
        .flatten();
    Ok(s.and_then(|s| serde_json::from_str::<LayerMeta>(&s).ok())
        .filter(|m| m.format == LAYER_FORMAT))
}

/// The cached commit of the layer with this diff_id (or, failing that, this blob digest),
/// when it holds a layer of `kind` read with `policy`.
pub fn lookup(
    repo: &Repo,
    diff_id: &str,
    digest: &str,
    kind: LayerKind,
    policy: PathPolicy,
) -> Result<Option<(String, LayerMeta)>> {
    for key in [diff_id, digest] {
        let Some(c) = repo
            .resolve_rev(&blob_ref(key), true)
            .with_context(|| format!("resolving the layer ref of {key}"))?
        else {
            continue;
        };
        if let Some(m) = read_meta(repo, &c)?.filter(|m| m.kind == kind && m.path_policy == policy)
        {
            return Ok(Some((c.to_string(), m)));
        }
    }
    Ok(None)
}

/// Point the layer's refs (diff_id, and the blob digest when it differs) at `commit`, in the
/// open transaction. Call only once both digests were verified.
pub fn set_refs(repo: &Repo, diff_id: &str, digest: &str, commit: &str) {
    repo.transaction_set_ref(None, &blob_ref(diff_id), Some(commit));
    if digest != diff_id {
        repo.transaction_set_ref(None, &blob_ref(digest), Some(commit));
    }
}

fn write_layer_commit(
    repo: &Repo,
    root: &ostree::MutableTree,
    meta: &LayerMeta,
    subject: &str,
) -> Result<String> {
    let file = repo.write_mtree(root, gio::Cancellable::NONE)?;
    let file = file
        .downcast_ref::<ostree::RepoFile>()
        .ok_or_else(|| anyhow!("write_mtree did not return a RepoFile"))?;
    let dict = glib::VariantDict::new(None);
    dict.insert_value(LAYER_META, &serde_json::to_string(meta)?.to_variant());
    let c = repo.write_commit_with_time(
        None,
        Some(subject),
        None,
        Some(&dict.end()),
        file,
        0,
        gio::Cancellable::NONE,
    )?;
    Ok(c.to_string())
}

/// Write a derived layer's tree as a layer commit (in the open transaction).
pub fn write_tree(repo: &Repo, t: &LayerTree, diff_id: &str) -> Result<(String, LayerMeta)> {
    let meta = LayerMeta {
        format: LAYER_FORMAT,
        kind: LayerKind::Tree,
        implicit_dirs: t.implicit_dirs.clone(),
        lower_links: t.lower_links.clone(),
        policy: t.policy.clone(),
        path_policy: t.path_policy,
    };
    let c = write_layer_commit(repo, &t.root, &meta, &format!("layer {diff_id}"))?;
    Ok((c, meta))
}

/// Write the object set of an ostree chunk layer (every content object it carried, present
/// before or not) as a layer commit.
pub fn write_objects(repo: &Repo, objects: &[String], diff_id: &str) -> Result<String> {
    let root = ostree::MutableTree::new();
    root.set_metadata_checksum(&crate::mtree::default_dirmeta(repo)?);
    for o in objects {
        root.replace_file(o, o)?;
    }
    let meta = LayerMeta {
        format: LAYER_FORMAT,
        kind: LayerKind::Objects,
        implicit_dirs: BTreeSet::new(),
        lower_links: Vec::new(),
        policy: PolicyReport::default(),
        path_policy: PathPolicy::default(),
    };
    write_layer_commit(repo, &root, &meta, &format!("objects of layer {diff_id}"))
}

/// What [`prune_layers`] removed (or, with `dry_run`, would remove).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneLayersReport {
    pub dry_run: bool,
    /// Layer refs no image or deployment needs.
    pub removed: Vec<String>,
    /// How many layer refs stay.
    pub kept: usize,
    /// Objects freed by the repository prune (0 in a dry run).
    pub objects_freed: u64,
    pub bytes_freed: u64,
}

/// The layer digests (diff_ids and blob digests) the image stored with `commit` uses.
fn layers_of(repo: &Repo, commit: &str, out: &mut HashSet<String>) -> Result<()> {
    use crate::pipeline::images::meta;
    use crate::pipeline::pull::{META_CONFIG, META_MANIFEST};
    let parse = |key: &str| -> Result<Option<serde_json::Value>> {
        match meta(repo, commit, key)? {
            Some(s) => Ok(Some(serde_json::from_str(&s).with_context(|| {
                format!("commit {commit}: stored {key} is not JSON")
            })?)),
            None => Ok(None),
        }
    };
    if let Some(m) = parse(META_MANIFEST)? {
        for l in m["layers"].as_array().into_iter().flatten() {
            if let Some(d) = l["digest"].as_str() {
                out.insert(d.to_string());
            }
        }
    }
    if let Some(c) = parse(META_CONFIG)? {
        for d in c["rootfs"]["diff_ids"].as_array().into_iter().flatten() {
            if let Some(d) = d.as_str() {
                out.insert(d.to_string());
            }
        }
    }
    Ok(())
}

/// Remove every layer ref that no other ref needs: image refs (`ostree/container/image/*`),
/// deployments (`ostree/0/*`, `ostree/1/*`) and any other ref whose commit carries an image's
/// manifest and config. With `prune_objects`, then free the objects no ref reaches.
pub fn prune_layers(path: &Path, dry_run: bool, prune_objects: bool) -> Result<PruneLayersReport> {
    let repo = open_repo(path)?;
    let mut r = prune_layers_in(&repo, dry_run)?;
    if prune_objects && !dry_run {
        let (_, pruned, size) = repo
            .prune(ostree::RepoPruneFlags::REFS_ONLY, 0, gio::Cancellable::NONE)
            .context("pruning the repository")?;
        r.objects_freed = pruned.max(0) as u64;
        r.bytes_freed = size;
    }
    Ok(r)
}

/// [`prune_layers`] on an open repository, refs only.
pub fn prune_layers_in(repo: &Repo, dry_run: bool) -> Result<PruneLayersReport> {
    let refs = repo
        .list_refs(None, gio::Cancellable::NONE)
        .context("listing refs")?;
    let mut needed = HashSet::new();
    let mut blobs = Vec::new();
    for (name, commit) in &refs {
        if let Some(esc) = name.strip_prefix(BLOB_REF_PREFIX) {
            blobs.push((name.to_string(), esc.to_string()));
            continue;
        }
        // A ref to something that is not a complete commit holds no image.
        if repo.load_commit(commit).is_ok() {
            layers_of(repo, commit, &mut needed)
                .with_context(|| format!("reading the image stored with ref {name}"))?;
        }
    }
    blobs.sort();
    let mut r = PruneLayersReport {
        dry_run,
        ..Default::default()
    };
    for (name, esc) in blobs {
        let digest = unescape_ref(&esc)?;
        if needed.contains(&digest) {
            r.kept += 1;
            continue;
        }
        if !dry_run {
            repo.set_ref_immediate(None, &name, None, gio::Cancellable::NONE)
                .with_context(|| format!("removing {name}"))?;
        }
        r.removed.push(name);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_escape_digests() {
        assert_eq!(
            blob_ref("sha256:abc"),
            "ostree/container/blob/sha256_3A_abc"
        );
        assert_eq!(unescape_ref("sha256_3A_abc").unwrap(), "sha256:abc");
    }

    #[test]
    fn layer_meta_round_trips_and_defaults() {
        let m: LayerMeta = serde_json::from_str(r#"{"format":1,"kind":"objects"}"#).unwrap();
        assert_eq!(m.kind, LayerKind::Objects);
        assert!(m.lower_links.is_empty());
        let s = serde_json::to_string(&m).unwrap();
        assert!(s.contains(r#""kind":"objects""#));
        assert!(serde_json::from_str::<LayerMeta>(r#"{"format":1,"kind":"other"}"#).is_err());
    }
}
