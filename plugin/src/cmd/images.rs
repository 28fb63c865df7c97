//! `image list`, `image metadata`, `image history`, `image remove`, `image prune-layers`.

use crate::cli::{MetadataArgs, PruneLayersArgs, RemoveArgs, RepoArgs};
use anyhow::Result;
use storage_bridge::pipeline::images;

pub fn list(a: RepoArgs) -> Result<()> {
    let l = images::list(&a.repo)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&l)?);
        return Ok(());
    }
    for i in &l {
        println!("{}", i.imgref);
        println!("    commit:   {}", i.commit);
        if let Some(d) = &i.manifest_digest {
            println!("    manifest: {d}");
        }
        if let Some(v) = &i.version {
            println!("    version:  {v}");
        }
    }
    Ok(())
}

pub fn metadata(a: MetadataArgs) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&images::metadata(&a.repo, &a.imgref, a.config)?)?
    );
    Ok(())
}

pub fn history(a: MetadataArgs) -> Result<()> {
    let cfg = images::metadata(&a.repo, &a.imgref, true)?;
    let manifest = images::metadata(&a.repo, &a.imgref, false)?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let mut li = layers.iter();
    println!("{:<22} {:>12}  CREATED BY", "CREATED", "SIZE");
    for h in cfg["history"].as_array().cloned().unwrap_or_default() {
        let size = if h["empty_layer"].as_bool() == Some(true) {
            "-".to_string()
        } else {
            li.next()
                .and_then(|l| l["size"].as_u64())
                .map(|s| s.to_string())
                .unwrap_or_else(|| "?".into())
        };
        println!(
            "{:<22} {:>12}  {}",
            h["created"].as_str().unwrap_or(""),
            size,
            h["created_by"].as_str().unwrap_or("").replace('\n', " ")
        );
    }
    Ok(())
}

pub fn remove(a: RemoveArgs) -> Result<()> {
    for r in images::remove(&a.repo, &a.imgrefs)? {
        println!("Removed {r}");
    }
    Ok(())
}

pub fn prune_layers(a: PruneLayersArgs) -> Result<()> {
    let r = storage_bridge::layer_cache::prune_layers(&a.repo, a.dry_run, a.prune_objects)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let verb = if r.dry_run { "Would remove" } else { "Removed" };
    for x in &r.removed {
        println!("{verb} {x}");
    }
    println!(
        "{} layer refs {}, {} kept.",
        r.removed.len(),
        if r.dry_run { "to remove" } else { "removed" },
        r.kept
    );
    if a.prune_objects && !r.dry_run {
        println!(
            "Freed {} objects ({}).",
            r.objects_freed,
            crate::render::mib(r.bytes_freed)
        );
    }
    Ok(())
}
