//! `switch`, `rollback`, `pin`, `unpin`.

use crate::cli::{PinArgs, PruneArgs, SwitchArgs, SysrootArgs};
use crate::progress_fd::Reporter;
use anyhow::{anyhow, Context, Result};
use ostree_bridge_hooks::{manage, stage};
use storage_bridge::imgref::OstreeImageReference;

pub fn switch(a: SwitchArgs) -> Result<()> {
    let imgref = OstreeImageReference::parse(&a.imgref)?;
    let path = &a.sysroot.sysroot;
    let st = ostree_bridge_hooks::status::status(path)?;
    let stateroot = st
        .deployments
        .first()
        .map(|d| d.stateroot.clone())
        .ok_or_else(|| {
            anyhow!(
                "{}: no deployment to switch from; use `image deploy --stateroot NAME`",
                path.display()
            )
        })?;
    let mut o = stage::DeployOptions::default();
    o.pull.skopeo = a.source.skopeo_options();
    let progress = Reporter::new(!a.json, a.progress.progress_fd, "switch", &a.imgref)?;
    let r = stage::deploy(path, &stateroot, &imgref, &o, &progress)
        .with_context(|| format!("switching {} to {imgref}", path.display()));
    progress.finish(&r);
    let r = r?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "Switched to {imgref}: wrote deployment {}",
            r.deployment_path.display()
        );
    }
    Ok(())
}

pub fn rollback(a: SysrootArgs) -> Result<()> {
    let (default, rollback) = manage::rollback(&a.sysroot)?;
    println!("Default deployment is now {default}; {rollback} is the rollback.");
    Ok(())
}

pub fn pin(a: PinArgs, pinned: bool) -> Result<()> {
    let d = manage::set_pinned(&a.sysroot.sysroot, a.index, pinned)?;
    println!(
        "Deployment {} ({d}) {}.",
        a.index,
        if pinned { "pinned" } else { "unpinned" }
    );
    Ok(())
}

pub fn prune(a: PruneArgs) -> Result<()> {
    let r = manage::prune_images(&a.sysroot.sysroot, a.dry_run)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let verb = if r.dry_run { "Would remove" } else { "Removed" };
    for x in &r.removed {
        println!("{verb} {x}");
    }
    for x in &r.kept {
        println!("Kept {x} (in use by a deployment)");
    }
    if r.removed.is_empty() {
        println!("Nothing to prune.");
    }
    Ok(())
}
