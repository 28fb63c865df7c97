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
