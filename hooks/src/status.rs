//! The deployments of a sysroot as plain data, for `status` (text and `--json`).

use crate::origin;
use crate::stage::{image_config, image_meta};
use anyhow::{Context, Result};
use ostree::gio;
use std::path::Path;

/// Version of the `status --json` document; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, serde::Serialize)]
pub struct DeploymentStatus {
    pub index: i32,
    pub stateroot: String,
    pub commit: String,
    pub serial: i32,
    pub booted: bool,
    pub staged: bool,
    pub pinned: bool,
    /// The default (first) deployment: what the next boot runs.
    pub default: bool,
    /// The deployment `rollback` would make the default.
    pub rollback: bool,
    pub image: Option<String>,
    pub manifest_digest: Option<String>,
    pub config_digest: Option<String>,
    pub version: Option<String>,
    pub kargs: Vec<String>,
    /// Where each karg comes from: "ostree", "image" (its kargs.d) or "local".
    pub karg_sources: Vec<KargSource>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct KargSource {
    pub karg: String,
    pub source: &'static str,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub schema_version: u32,
    pub sysroot: String,
    pub deployments: Vec<DeploymentStatus>,
}

/// Read the status of the sysroot at `path` (no lock: read-only).
pub fn status(path: &Path) -> Result<Status> {
    if !path.join("ostree/repo").is_dir() {
        anyhow::bail!("{}: not an ostree sysroot (no ostree/repo)", path.display());
    }
    let sysroot = ostree::Sysroot::new(Some(&gio::File::for_path(path)));
    sysroot
        .load(gio::Cancellable::NONE)
        .with_context(|| format!("loading sysroot {}", path.display()))?;
    let repo = sysroot.repo();
    let booted = sysroot.booted_deployment();
    let deps = sysroot.deployments();
    let mut out = Vec::new();
    for (i, d) in deps.iter().enumerate() {
        let text = d
            .origin()
            .map(|kf| kf.to_data().to_string())
            .unwrap_or_default();
        let image = origin::parse(&text);
        let cfg = image_config(&repo, &d.csum()).ok().flatten();
        let meta = |k: &str| image_meta(&repo, &d.csum(), k).ok().flatten();
        let manifest_digest = meta(storage_bridge::pipeline::pull::META_MANIFEST_DIGEST);
        let manifest: Option<serde_json::Value> =
            meta(storage_bridge::pipeline::pull::META_MANIFEST)
                .and_then(|s| serde_json::from_str(&s).ok());
        let kargs: Vec<String> = d
            .bootconfig()
            .and_then(|b| b.get("options"))
            .map(|o| o.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let image_kargs = crate::stage::image_kargs_of(&repo, &d.csum()).unwrap_or_default();
        let karg_sources = crate::kargs::sources(&kargs, &image_kargs)
            .into_iter()
            .map(|(karg, source)| KargSource { karg, source })
            .collect();
        out.push(DeploymentStatus {
            index: i as i32,
            stateroot: d.osname().to_string(),
            commit: d.csum().to_string(),
            serial: d.deployserial(),
            booted: booted.as_ref().is_some_and(|b| b.equal(d)),
            staged: d.is_staged(),
            pinned: d.is_pinned(),
            default: i == 0,
            rollback: i == 1,
            image,
            manifest_digest,
            config_digest: manifest
                .and_then(|m| m["config"]["digest"].as_str().map(str::to_string)),
            version: cfg.and_then(|c| {
                c["config"]["Labels"]["org.opencontainers.image.version"]
                    .as_str()
                    .map(str::to_string)
            }),
            kargs,
            karg_sources,
        });
    }
    Ok(Status {
        schema_version: SCHEMA_VERSION,
        sysroot: path.display().to_string(),
        deployments: out,
    })
}
