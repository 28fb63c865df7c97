//! Everything that writes to a sysroot: import the image into the sysroot's repo, check it can
//! boot, and stage it (booted host: ostree finalizes at shutdown) or write it directly
//! (a sysroot being installed, or a test's).

use crate::{kargs, origin};
use anyhow::{bail, Context, Result};
use ostree::gio;
use ostree::glib;
use std::io::Read;
use std::path::{Path, PathBuf};
use storage_bridge::commit::{open_file, CommitTree};
use storage_bridge::imgref::OstreeImageReference;
use storage_bridge::progress::Progress;

/// What to deploy.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DeployOptions {
    /// Kernel arguments added by the user (`--karg`), after the image's.
    pub kargs: Vec<String>,
    /// The reference recorded in the origin (`--target-imgref`); default: the one pulled.
    pub target_imgref: Option<String>,
    pub pull: storage_bridge::PullOptions,
}

/// What a deploy did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeployReport {
    pub stateroot: String,
    pub commit: String,
    pub deployment_path: PathBuf,
    pub staged: bool,
    pub kargs: Vec<String>,
    pub image_kargs: Vec<String>,
    pub origin_imgref: String,
    /// What the `/etc` merge keeps, takes and conflicts on (None on a first deployment).
    pub etc: Option<crate::etc_merge::EtcReport>,
    pub pull: storage_bridge::PullReport,
}

/// An ostree sysroot, loaded and locked; unlocked on drop.
pub struct LockedSysroot {
    pub sysroot: ostree::Sysroot,
    pub path: PathBuf,
}

impl LockedSysroot {
    pub fn open(path: &Path) -> Result<Self> {
        if !path.join("ostree/repo").is_dir() {
            bail!("{}: not an ostree sysroot (no ostree/repo; create one with `ostree admin init-fs`)", path.display());
        }
        let sysroot = ostree::Sysroot::new(Some(&gio::File::for_path(path)));
        sysroot
            .load(gio::Cancellable::NONE)
            .with_context(|| format!("loading sysroot {}", path.display()))?;
        if !sysroot.try_lock().context("locking the sysroot")? {
            bail!(
                "{}: the sysroot is locked by another process (an upgrade in progress?)",
                path.display()
            );
        }
        Ok(LockedSysroot {
            sysroot,
            path: path.to_path_buf(),
        })
    }
}

impl Drop for LockedSysroot {
    fn drop(&mut self) {
        self.sysroot.unlock();
    }
}

/// Read every file of one directory of a commit (small files: kargs.d).
fn read_dir_files(
    repo: &ostree::Repo,
    tree: &CommitTree,
    dir: &str,
) -> Result<Vec<(String, String)>> {
    let Some(d) = tree.dirs.iter().find(|d| d.path == dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (name, csum) in &d.files {
        let (meta, content) = open_file(repo, csum)?;
        if meta.size > 1 << 20 {
            bail!("/{dir}/{name} is over 1 MiB");
        }
        let mut s = String::new();
        if let Some(mut r) = content {
            r.read_to_string(&mut s)
                .with_context(|| format!("/{dir}/{name} is not UTF-8 text"))?;
        }
        out.push((name.clone(), s));
    }
    Ok(out)
}

/// The kernel version of a bootable tree: exactly one `usr/lib/modules/$KVER/vmlinuz`.
pub fn kernel_version(tree: &CommitTree) -> Result<String> {
    let kernels: Vec<&str> = tree
        .dirs
        .iter()
        .filter(|d| d.path.starts_with("usr/lib/modules/") && d.path.matches('/').count() == 3)
        .filter(|d| d.files.iter().any(|(n, _)| n == "vmlinuz"))
        .map(|d| d.path.rsplit('/').next().unwrap_or_default())
        .collect();
    match kernels.as_slice() {
        [one] => Ok(one.to_string()),
        [] => bail!("the image has no kernel: a bootable image needs exactly one /usr/lib/modules/$KVER/vmlinuz (install a kernel package in the Containerfile)"),
        many => bail!("the image has {} kernels ({}): a bootable image needs exactly one /usr/lib/modules/$KVER/vmlinuz", many.len(), many.join(", ")),
    }
}

/// A string the importer stored with a commit (see `storage_bridge::pipeline::images::meta`).
pub fn image_meta(repo: &ostree::Repo, commit: &str, key: &str) -> Result<Option<String>> {
    storage_bridge::pipeline::images::meta(repo, commit, key)
}

/// The kernel arguments a commit's kargs.d asks for.
pub fn image_kargs_of(repo: &ostree::Repo, commit: &str) -> Result<Vec<String>> {
    let tree = CommitTree::load(repo, commit)?;
    kargs::from_files(
        &read_dir_files(repo, &tree, kargs::KARGS_DIR)?,
        std::env::consts::ARCH,
    )
}

/// Bytes of the kernel and initramfs a deployment copies to /boot.
fn boot_files_size(repo: &ostree::Repo, tree: &CommitTree) -> Result<u64> {
    let mut n = 0;
    for d in tree
        .dirs
        .iter()
        .filter(|d| d.path.starts_with("usr/lib/modules/") && d.path.matches('/').count() == 3)
    {
        for (name, csum) in &d.files {
            if name == "vmlinuz" || name == "initramfs.img" {
                n += storage_bridge::commit::query_file(repo, csum)?.size;
            }
        }
    }
    Ok(n)
}

/// The image config stored with an imported commit.
pub fn image_config(repo: &ostree::Repo, commit: &str) -> Result<Option<serde_json::Value>> {
    image_meta(repo, commit, storage_bridge::pipeline::pull::META_CONFIG)?
        .map(|s| serde_json::from_str(&s).context("parsing the stored image config"))
        .transpose()
}

/// Import `imgref` and deploy it in `stateroot`.
pub fn deploy(
    sysroot_path: &Path,
    stateroot: &str,
    imgref: &OstreeImageReference,
    opts: &DeployOptions,
    progress: &dyn Progress,
) -> Result<DeployReport> {
    let locked = LockedSysroot::open(sysroot_path)?;
    let sysroot = &locked.sysroot;
    if !sysroot_path.join("ostree/deploy").join(stateroot).is_dir() {
        bail!("stateroot {stateroot:?} does not exist in {} (create it with `ostree admin os-init {stateroot}`)", sysroot_path.display());
    }
    let repo = sysroot.repo();
    let repo_path = sysroot_path.join("ostree/repo");
    // The import writes layers' content into the repo: check there is room for what is not
    // there yet before anything is written.
    let mut pull_opts = opts.pull.clone();
    let (rp, what) = (repo_path.clone(), format!("importing {imgref}"));
    pull_opts.preflight = Some(storage_bridge::pipeline::pull::Preflight(
        std::sync::Arc::new(move |p| crate::preflight::require(&rp, p.estimated_bytes, &what)),
    ));
    let pull = storage_bridge::pull(&repo_path, imgref, &pull_opts, progress)?;
    let commit = pull.merged_commit.clone();

    progress.phase("checking the image can boot");
    let tree = CommitTree::load(&repo, &commit)?;
    let labels = image_config(&repo, &commit)?
        .map(|c| c["config"]["Labels"].clone())
        .unwrap_or_default();
    let bootable = labels["ostree.bootable"].as_str() == Some("true")
        || labels["containers.bootc"].as_str() == Some("1")
        || tree.meta.bootable == Some(true);
    if !bootable {
        bail!("{imgref} is not bootable: it has neither the ostree.bootable nor the containers.bootc label (build it FROM a bootable base, or LABEL containers.bootc=1)");
    }
    kernel_version(&tree)?;
    // The deployment copies kernel and initramfs to /boot.
    let boot_bytes = boot_files_size(&repo, &tree)?;
    crate::preflight::require(
        &sysroot_path.join("boot"),
        boot_bytes,
        "the kernel and initramfs in /boot",
    )?;
    let image_kargs = kargs::from_files(
        &read_dir_files(&repo, &tree, kargs::KARGS_DIR)?,
        std::env::consts::ARCH,
    )?;

    let merge = sysroot.merge_deployment(Some(stateroot));
    let current: Vec<String> = match merge
        .as_ref()
        .and_then(|m| m.bootconfig())
        .and_then(|b| b.get("options"))
    {
        Some(o) => o
            .split_whitespace()
            .filter(|k| !k.starts_with("ostree="))
            .map(str::to_string)
            .collect(),
        None => Vec::new(),
    };
    // The previous image's own kargs: those the new image dropped go, the rest stay.
    let old_image_kargs = match &merge {
        Some(m) => image_kargs_of(&repo, &m.csum())?,
        None => Vec::new(),
    };
    let all = kargs::merge(&current, &old_image_kargs, &image_kargs, &opts.kargs);
    let origin_ref = opts
        .target_imgref
        .clone()
        .unwrap_or_else(|| imgref.to_string());
    let kf = glib::KeyFile::new();
    kf.load_from_data(&origin::render(&origin_ref), glib::KeyFileFlags::NONE)?;
    let argv: Vec<&str> = all.iter().map(String::as_str).collect();
    let dopts = ostree::SysrootDeployTreeOpts {
        override_kernel_argv: Some(&argv),
        ..Default::default()
    };
    progress.phase("deploying");
    let staged = sysroot.is_booted();
    let dep = if staged {
        sysroot
            .stage_tree_with_options(
                Some(stateroot),
                &commit,
                Some(&kf),
                merge.as_ref(),
                &dopts,
                gio::Cancellable::NONE,
            )
            .context("staging the deployment")?
    } else {
        let dep = sysroot
            .deploy_tree_with_options(
                Some(stateroot),
                &commit,
                Some(&kf),
                merge.as_ref(),
                Some(&dopts),
                gio::Cancellable::NONE,
            )
            .context("writing the deployment")?;
        sysroot
            .simple_write_deployment(
                Some(stateroot),
                &dep,
                merge.as_ref(),
                ostree::SysrootSimpleWriteDeploymentFlags::NONE,
                gio::Cancellable::NONE,
            )
            .context("making it the default deployment")?;
        sysroot
            .cleanup(gio::Cancellable::NONE)
            .context("cleaning up the sysroot")?;
        dep
    };
    let rel = format!(
        "ostree/deploy/{stateroot}/deploy/{}.{}",
        dep.csum(),
        dep.deployserial()
    );
    let etc = match &merge {
        Some(m) => {
            let old = sysroot_path.join(format!(
                "ostree/deploy/{stateroot}/deploy/{}.{}",
                m.csum(),
                m.deployserial()
            ));
            Some(
                crate::etc_merge::report(&old, &sysroot_path.join(&rel))
                    .context("comparing /etc")?,
            )
        }
        None => None,
    };
    Ok(DeployReport {
        stateroot: stateroot.to_string(),
        commit,
        deployment_path: sysroot_path.join(&rel),
        staged,
        kargs: all,
        image_kargs,
        origin_imgref: origin_ref,
        etc,
        pull,
    })
}
