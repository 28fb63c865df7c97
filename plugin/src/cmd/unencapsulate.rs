//! `ostree-container unencapsulate`: pure ostree image ─▶ its commit.

use crate::cli::UnencapsulateArgs;
use crate::progress_fd::Reporter;
use anyhow::{Context, Result};
use storage_bridge::imgref::OstreeImageReference;
use storage_bridge::UnencapsulateOptions;

pub fn run(a: UnencapsulateArgs) -> Result<()> {
    let imgref = OstreeImageReference::parse(&a.imgref)?;
    let mut o = UnencapsulateOptions::default();
    o.write_ref = a.write_ref.clone();
    o.skopeo = a.source.skopeo_options();
    o.jobs = a.jobs.unwrap_or(0) as usize;
    let progress = Reporter::new(
        !a.quiet && !a.json,
        a.progress.progress_fd,
        "unencapsulate",
        &a.imgref,
    )?;
    let report = storage_bridge::unencapsulate(&a.repo, &imgref, &o, &progress)
        .with_context(|| format!("into {}", a.repo.display()));
    progress.finish(&report);
    let report = report?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if let Some(r) = &report.write_ref {
        println!("Imported: {r} => {}", report.commit);
    } else {
        println!("Imported: {}", report.commit);
    }
    Ok(())
}
