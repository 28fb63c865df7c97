//! `ostree-container upgrade`: deploy the tracked image again when it changed.

use crate::cli::UpgradeArgs;
use crate::progress_fd::Reporter;
use anyhow::{Context, Result};
use ostree_bridge_hooks::upgrade::{upgrade, UpgradeOptions};

pub fn run(a: UpgradeArgs) -> Result<()> {
    let mut o = UpgradeOptions::default();
    o.check = a.check;
    o.download_only = a.download_only;
    o.deploy.pull.skopeo = a.source.skopeo_options();
    let progress = Reporter::new(!a.json, a.progress.progress_fd, "upgrade", "")?;
    let r = upgrade(&a.sysroot, &o, &progress)
        .with_context(|| format!("upgrading {}", a.sysroot.display()));
    progress.finish(&r);
    let r = r?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    if !r.update_available {
        println!(
            "No update available. {} is at {}",
            r.imgref, r.available_digest
        );
        return Ok(());
    }
    println!(
        "Update available for {}: {} → {}",
        r.imgref,
        r.current_digest.as_deref().unwrap_or("(unknown)"),
        r.available_digest
    );
    if let Some(c) = &r.downloaded_commit {
        println!("Downloaded: {c} (not deployed)");
    }
    if let Some(d) = &r.deployed {
        println!(
            "Wrote deployment {} ({})",
            d.deployment_path.display(),
            if d.staged {
                "staged"
            } else {
                "the default for the next boot"
            }
        );
    }
    Ok(())
}
