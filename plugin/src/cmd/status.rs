//! `ostree-container status`: the sysroot's deployments.

use crate::cli::StatusArgs;
use anyhow::Result;

pub fn run(a: StatusArgs) -> Result<()> {
    let s = ostree_bridge_hooks::status::status(&a.sysroot)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    if s.deployments.is_empty() {
        println!("No deployments in {}.", s.sysroot);
    }
    for d in &s.deployments {
        let mut marks = Vec::new();
        if d.booted {
            marks.push("booted");
        }
        if d.staged {
            marks.push("staged");
        }
        if d.default {
            marks.push("default");
        }
        if d.rollback {
            marks.push("rollback");
        }
        if d.pinned {
            marks.push("pinned");
        }
        println!(
            "{} {}.{} [{}]",
            d.stateroot,
            d.commit,
            d.serial,
            marks.join(", ")
        );
        println!(
            "    image:    {}",
            d.image.as_deref().unwrap_or("(not from a container image)")
        );
        if let Some(v) = &d.version {
            println!("    version:  {v}");
        }
        if let Some(m) = &d.manifest_digest {
            println!("    manifest: {m}");
        }
        println!("    kargs:    {}", d.kargs.join(" "));
    }
    Ok(())
}
