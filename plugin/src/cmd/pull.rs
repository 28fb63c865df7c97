//! `ostree-container image pull`: any image ─▶ one merged commit.

use crate::cli::PullArgs;
use crate::progress_fd::Reporter;
use crate::render;
use anyhow::{Context, Result};
use storage_bridge::imgref::OstreeImageReference;
use storage_bridge::PullOptions;

pub fn run(a: PullArgs) -> Result<()> {
    let imgref = OstreeImageReference::parse(&a.imgref)?;
    let mut o = PullOptions::default();
    o.skopeo = a.source.skopeo_options();
    o.jobs = a.jobs.unwrap_or(0) as usize;
    let progress = Reporter::new(
        !a.quiet && !a.json,
        a.progress.progress_fd,
        "image pull",
        &a.imgref,
    )?;
    let r = storage_bridge::pull(&a.repo, &imgref, &o, &progress)
        .with_context(|| format!("into {}", a.repo.display()));
    progress.finish(&r);
    let r = r?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    if !a.quiet {
        render::pull_summary(&r);
    }
    println!("Wrote: {} => {}", r.imgref, r.merged_commit);
    Ok(())
}
