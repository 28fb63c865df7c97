//! `ostree-container image deploy`: import an image and make it the next boot's deployment.

use crate::cli::DeployArgs;
use crate::progress_fd::Reporter;
use crate::render;
use anyhow::{Context, Result};
use ostree_bridge_hooks::stage::{deploy, DeployOptions};
use storage_bridge::imgref::OstreeImageReference;

pub fn run(a: DeployArgs) -> Result<()> {
    let imgref = OstreeImageReference::parse(&a.imgref)?;
    let mut o = DeployOptions::default();
    o.kargs = a.kargs.clone();
    o.target_imgref = a.target_imgref.clone();
    o.pull.skopeo = a.source.skopeo_options();
    let progress = Reporter::new(!a.json, a.progress.progress_fd, "image deploy", &a.imgref)?;
    let r = deploy(&a.sysroot, &a.stateroot, &imgref, &o, &progress).with_context(|| {
        format!(
            "deploying {imgref} to {} ({})",
            a.sysroot.display(),
            a.stateroot
        )
    });
    progress.finish(&r);
    let r = r?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!("Imported: {} => {}", r.pull.imgref, r.commit);
    println!(
        "{} deployment {} ({})",
        if r.staged { "Staged" } else { "Wrote" },
        r.deployment_path.display(),
        if r.staged {
            "finalized at shutdown"
        } else {
            "the default for the next boot"
        }
    );
    println!("Kernel arguments: {}", r.kargs.join(" "));
    render::etc_report(r.etc.as_ref());
    Ok(())
}
