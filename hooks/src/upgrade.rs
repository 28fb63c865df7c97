//! `upgrade`: resolve the deployed image reference again; deploy when its manifest changed.
//!
//! The deployment followed is the booted one (on a host) or the default one (elsewhere). Its
//! origin names the image; the manifest digest recorded at import is compared with the one
//! the reference resolves to now, read without fetching any layer.

use crate::origin;
use crate::stage::{self, DeployOptions, DeployReport};
use anyhow::{bail, Context, Result};
use ostree::gio;
use std::path::Path;
use storage_bridge::imgref::OstreeImageReference;
use storage_bridge::progress::Progress;

/// How far to go.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct UpgradeOptions {
    /// Only say whether there is an update.
    pub check: bool,
    /// Import the update, do not deploy it.
    pub download_only: bool,
    pub deploy: DeployOptions,
}

/// What `upgrade` found and did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpgradeReport {
    pub stateroot: String,
    pub imgref: String,
    pub current_digest: Option<String>,
    pub available_digest: String,
    pub update_available: bool,
    /// "none", "checked", "downloaded" or "deployed".
    pub action: &'static str,
    pub downloaded_commit: Option<String>,
    pub deployed: Option<DeployReport>,
}

/// Upgrade the sysroot at `path`.
pub fn upgrade(
    path: &Path,
    opts: &UpgradeOptions,
    progress: &dyn Progress,
) -> Result<UpgradeReport> {
    if !path.join("ostree/repo").is_dir() {
        bail!("{}: not an ostree sysroot (no ostree/repo)", path.display());
    }
    let sysroot = ostree::Sysroot::new(Some(&gio::File::for_path(path)));
    sysroot
        .load(gio::Cancellable::NONE)
        .with_context(|| format!("loading sysroot {}", path.display()))?;
    let dep = match sysroot.booted_deployment() {
        Some(d) => d,
        None => sysroot.deployments().into_iter().next().ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no deployment to upgrade (deploy one with `image deploy`)",
                path.display()
            )
        })?,
    };
    let stateroot = dep.osname().to_string();
    let text = dep
        .origin()
        .map(|kf| kf.to_data().to_string())
        .unwrap_or_default();
    let Some(imgref_s) = origin::parse(&text) else {
        bail!(
            "deployment {}.{} was not deployed from a container image (its origin has no {})",
            dep.csum(),
            dep.deployserial(),
            origin::IMAGE_KEY
        );
    };
    let imgref = OstreeImageReference::parse(&imgref_s)
        .with_context(|| format!("the origin's image reference {imgref_s:?}"))?;
    let repo = sysroot.repo();
    let current = stage::image_meta(
        &repo,
        &dep.csum(),
        storage_bridge::pipeline::pull::META_MANIFEST_DIGEST,
    )?;
    progress.phase("checking for an update");
    let available =
        storage_bridge::transport::manifest_digest(&imgref.imgref, &opts.deploy.pull.skopeo)
            .with_context(|| format!("resolving {imgref}"))?;
    let update_available = current.as_deref() != Some(available.as_str());
    let mut r = UpgradeReport {
        stateroot: stateroot.clone(),
        imgref: imgref.to_string(),
        current_digest: current,
        available_digest: available,
        update_available,
        action: "none",
        downloaded_commit: None,
        deployed: None,
    };
    drop(sysroot);
    if !update_available {
        return Ok(r);
    }
    if opts.check {
        r.action = "checked";
        return Ok(r);
    }
    if opts.download_only {
        let p = storage_bridge::pull(
            &path.join("ostree/repo"),
            &imgref,
            &opts.deploy.pull,
            progress,
        )?;
        r.downloaded_commit = Some(p.merged_commit);
        r.action = "downloaded";
        return Ok(r);
    }
    let d = stage::deploy(path, &stateroot, &imgref, &opts.deploy, progress)?;
    r.action = "deployed";
    r.deployed = Some(d);
    Ok(r)
}
