//! `ostree-container container lint`.

use crate::cli::LintArgs;
use anyhow::Result;

pub fn run(a: LintArgs) -> Result<()> {
    let r = ostree_bridge_hooks::lint::lint(&a.rootfs)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if r.findings.is_empty() {
        println!("lint: {} is clean", r.rootfs);
    }
    if !a.json {
        for f in &r.findings {
            println!("{}: {} ({}): {}", f.severity, f.rule, f.count, f.message);
            for p in &f.paths {
                println!("    {p}");
            }
            if f.count > f.paths.len() {
                println!("    … and {} more", f.count - f.paths.len());
            }
        }
    }
    let code = if r.fatal() {
        1
    } else if r.findings.is_empty() {
        0
    } else {
        2
    };
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}
