//! Reordering and marking existing deployments: rollback, pin, unpin.

use crate::stage::LockedSysroot;
use anyhow::{bail, Context, Result};
use ostree::gio;
use std::path::Path;

/// Make the rollback deployment the default (the current default becomes the rollback).
/// Returns (new default, new rollback) as `commit.serial`.
pub fn rollback(path: &Path) -> Result<(String, String)> {
    let locked = LockedSysroot::open(path)?;
    let s = &locked.sysroot;
    let mut deps = s.deployments();
    if deps.iter().any(|d| d.is_staged()) {
        bail!("a deployment is staged for the next boot; roll back after it is finalized (reboot) or remove it");
    }
    if deps.len() < 2 {
        bail!(
            "{}: there is no rollback deployment (only {} deployment)",
            path.display(),
            deps.len()
        );
    }
    deps.swap(0, 1);
    s.write_deployments(&deps, gio::Cancellable::NONE)
        .context("writing the new deployment order")?;
    let name = |d: &ostree::Deployment| format!("{}.{}", d.csum(), d.deployserial());
    Ok((name(&deps[0]), name(&deps[1])))
}

/// Pin (or unpin) deployment `index` (as `status` numbers them) so cleanup never removes it.
pub fn set_pinned(path: &Path, index: usize, pinned: bool) -> Result<String> {
    let locked = LockedSysroot::open(path)?;
    let s = &locked.sysroot;
    let deps = s.deployments();
    let Some(d) = deps.get(index) else {
        bail!(
            "no deployment {index} (there are {}; see `status`)",
            deps.len()
        );
    };
    if d.is_staged() {
        bail!("deployment {index} is staged; it can be pinned once it is finalized");
    }
    s.deployment_set_pinned(d, pinned)
        .context("writing the pin")?;
    Ok(format!("{}.{}", d.csum(), d.deployserial()))
}

/// What `prune-images` removed (or, with `dry_run`, would remove).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    /// Image refs no deployment uses.
    pub removed: Vec<String>,
    /// Image refs kept because a deployment (booted, staged, rollback or pinned) uses them.
    pub kept: Vec<String>,
}

/// Remove the images no deployment uses, then let ostree free their objects. Every deployment
/// is a root: the default, the rollback, a staged one, pinned ones.
pub fn prune_images(path: &Path, dry_run: bool) -> Result<PruneReport> {
    let locked = LockedSysroot::open(path)?;
    let s = &locked.sysroot;
    let roots: std::collections::HashSet<String> = s
        .deployments()
        .iter()
        .map(|d| d.csum().to_string())
        .collect();
    let repo = s.repo();
    let prefix = storage_bridge::pipeline::pull::IMAGE_REF_PREFIX;
    let refs = repo
        .list_refs(Some(prefix.trim_end_matches('/')), gio::Cancellable::NONE)
        .context("listing image refs")?;
    let mut r = PruneReport {
        dry_run,
        removed: Vec::new(),
        kept: Vec::new(),
    };
    let mut names: Vec<_> = refs.into_iter().collect();
    names.sort();
    for (name, commit) in names {
        let full = if name.starts_with(prefix) {
            name.to_string()
        } else {
            format!("{prefix}{name}")
        };
        if roots.contains(commit.as_str()) {
            r.kept.push(full);
            continue;
        }
        if !dry_run {
            repo.set_ref_immediate(None, &full, None, gio::Cancellable::NONE)
                .with_context(|| format!("removing {full}"))?;
        }
        r.removed.push(full);
    }
    if !dry_run {
        // The layers only the removed images used go too, so cleanup frees their objects.
        storage_bridge::layer_cache::prune_layers_in(&repo, false)
            .context("pruning cached layers")?;
        s.cleanup(gio::Cancellable::NONE)
            .context("pruning the repository")?;
    }
    Ok(r)
}
