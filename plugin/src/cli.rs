//! The command line, as data (clap derive). Same verbs and argument order as ostree-ext's
//! `ostree container …`, so scripts move between the two.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "ostree-container",
    version,
    about = "Bridge ostree commits and OCI container images",
    long_about = "Bridge ostree commits and OCI container images.\n\n\
        Also runs as `ostree container …` once installed as \
        /usr/libexec/libostree/ext/ostree-container.",
    after_help = "Image references: docker://HOST/NAME:TAG (or registry:HOST/NAME:TAG), oci:DIR[:TAG], \
        oci-archive:FILE[:TAG], docker-archive:FILE, dir:DIR, \
        containers-storage:[DRIVER@GRAPHROOT+RUNROOT]NAME"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Wrap an ostree commit into a container image, chunked into component layers.
    ///
    /// Layers follow the packages that own the files (dpkg or rpm database, or the
    /// `user.component` xattr; content nobody owns is grouped by directory). Examples:
    ///
    ///   ostree-container encapsulate --repo=/srv/repo exampleos/x86_64/stable \
    ///       containers-storage:localhost/exampleos:latest
    ///
    ///   ostree-container encapsulate --repo=repo --prior-build oci:out:v1 main oci:out:v2
    #[command(alias = "export")]
    Encapsulate(Box<EncapsulateArgs>),

    /// Import the ostree commit an image encapsulates (a pure ostree image, not a derived one).
    ///
    /// Every object is verified against its checksum, every blob against its digest, and the
    /// commit against the image's ostree.commit label; nothing is kept when any check fails.
    /// Example:
    ///
    ///   ostree-container unencapsulate --repo=/srv/repo --write-ref=os/stable \
    ///       ostree-unverified-image:oci:/srv/os:1
    Unencapsulate(Box<UnencapsulateArgs>),

    /// Work with images stored in an ostree repository.
    #[command(subcommand)]
    Image(ImageCommand),

    /// Show a sysroot's deployments: image, digests, version, kernel arguments.
    Status(StatusArgs),

    /// Resolve the deployed image reference again (a tag in containers-storage too) and deploy
    /// it when its manifest changed; says "No update available." otherwise and writes nothing.
    Upgrade(Box<UpgradeArgs>),

    /// Deploy another image in the default deployment's stateroot, and follow it from now on.
    Switch(Box<SwitchArgs>),

    /// Make the rollback deployment the default again (the current default becomes the
    /// rollback).
    Rollback(SysrootArgs),

    /// Pin deployment INDEX (as `status` numbers them) so cleanup never removes it.
    Pin(PinArgs),

    /// Unpin deployment INDEX.
    Unpin(PinArgs),

    /// Checks meant for container builds.
    #[command(subcommand)]
    Container(ContainerCommand),
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Check a root filesystem for what would fail or be lost on import and deploy; meant as
    /// the last `RUN` of a Containerfile. Exit status: 0 clean, 1 fatal problems, 2 warnings.
    ///
    ///   RUN ostree-container container lint
    Lint(LintArgs),
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// The root filesystem to check (default /).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub rootfs: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SysrootArgs {
    /// The sysroot (default /).
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub sysroot: PathBuf,
}

#[derive(Debug, Args)]
pub struct ProgressArgs {
    /// Also write progress as JSON lines to this open file descriptor (schema in README:
    /// start, phase, plan, layer_start, layer_progress, layer_done, done or error).
    #[arg(long, value_name = "FD")]
    pub progress_fd: Option<i32>,
}

#[derive(Debug, Args)]
pub struct PinArgs {
    #[command(flatten)]
    pub sysroot: SysrootArgs,
    /// The deployment's index in `status`.
    pub index: usize,
}

#[derive(Debug, Args)]
pub struct SwitchArgs {
    #[command(flatten)]
    pub sysroot: SysrootArgs,
    /// The image to switch to.
    #[arg(value_name = "IMGREF")]
    pub imgref: String,
    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub progress: ProgressArgs,
    /// Print a JSON report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The sysroot (default /).
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub sysroot: PathBuf,

    /// Only check: read the manifest, fetch no layer, change nothing.
    #[arg(long, conflicts_with = "download_only")]
    pub check: bool,

    /// Import the update but do not deploy it.
    #[arg(long)]
    pub download_only: bool,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub progress: ProgressArgs,

    /// Print a JSON report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The sysroot (default /).
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub sysroot: PathBuf,

    /// Print JSON (schema_version 1, documented in README).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The sysroot to deploy into (default /).
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub sysroot: PathBuf,

    /// The stateroot (osname) to deploy into; it must exist (`ostree admin os-init NAME`).
    #[arg(long, value_name = "NAME")]
    pub stateroot: String,

    /// The image to import and deploy.
    #[arg(long, value_name = "IMGREF")]
    pub imgref: String,

    /// Add a kernel argument (repeatable), after the image's kargs.d ones.
    #[arg(long = "karg", value_name = "KARG", allow_hyphen_values = true)]
    pub kargs: Vec<String>,

    /// The image reference to record for later upgrades (default: IMGREF).
    #[arg(long, value_name = "IMGREF")]
    pub target_imgref: Option<String>,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub progress: ProgressArgs,

    /// Print a JSON report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import any image (an ostree image, one built FROM it, or a plain OCI image) as one
    /// merged commit under ostree/container/image/<escaped IMGREF>.
    ///
    /// Derived layers are parsed in Rust and merged in memory (whiteouts, hardlinks, opaque
    /// directories); /etc becomes /usr/etc, and what ostree cannot hold (/opt, /srv, /home,
    /// children of /run and /tmp, device nodes, …) is dropped and listed. Example:
    ///
    ///   ostree-container image pull /ostree/repo \
    ///       ostree-unverified-image:containers-storage:localhost/myos
    Pull(Box<PullArgs>),

    /// Import an image and deploy it: the next boot runs it, the current default stays as the
    /// rollback.
    ///
    /// The image must be bootable (ostree.bootable or containers.bootc label, exactly one
    /// /usr/lib/modules/$KVER/vmlinuz). Kernel arguments come from the image's
    /// /usr/lib/bootc/kargs.d/*.toml and --karg. On a booted host the deployment is staged and
    /// finalized at shutdown; on another sysroot it is written at once. Example:
    ///
    ///   ostree-container image deploy --sysroot /mnt/sysroot --stateroot myos \
    ///       --imgref ostree-unverified-image:containers-storage:localhost/myos
    Deploy(Box<DeployArgs>),

    /// List the images stored in a repository.
    List(RepoArgs),

    /// Print an image's stored manifest (or, with --config, its config) as JSON.
    Metadata(MetadataArgs),

    /// Show an image's history: one line per build step, with its layer's size.
    History(MetadataArgs),

    /// Remove images (their refs; a later `ostree prune` frees the objects).
    Remove(RemoveArgs),

    /// Remove every image of a sysroot's repo that no deployment uses (booted, staged,
    /// rollback and pinned ones are kept), and free their objects.
    PruneImages(PruneArgs),

    /// Remove the cached layers (refs under ostree/container/blob/) that no image ref and no
    /// deployment needs; with --prune-objects, also free the objects nothing reaches any more.
    ///
    /// Layers are cached by diff_id so a later pull of an image that shares them fetches only
    /// the others. Example:
    ///
    ///   ostree-container image remove --repo=/srv/repo oci:/srv/os:1
    ///   ostree-container image prune-layers --repo=/srv/repo --prune-objects
    PruneLayers(PruneLayersArgs),
}

#[derive(Debug, Args)]
pub struct PruneLayersArgs {
    /// Path to the ostree repository.
    #[arg(long, value_name = "REPO")]
    pub repo: PathBuf,
    /// List what would go; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Then prune the repository (like `ostree prune --refs-only`) to free the objects.
    #[arg(long)]
    pub prune_objects: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub sysroot: SysrootArgs,
    /// List what would go; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RepoArgs {
    /// Path to the ostree repository.
    #[arg(long, value_name = "REPO")]
    pub repo: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MetadataArgs {
    /// Path to the ostree repository.
    #[arg(long, value_name = "REPO")]
    pub repo: PathBuf,
    /// The image, as `image list` shows it.
    #[arg(value_name = "IMGREF")]
    pub imgref: String,
    /// The config instead of the manifest.
    #[arg(long)]
    pub config: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Path to the ostree repository.
    #[arg(long, value_name = "REPO")]
    pub repo: PathBuf,
    /// The images to remove.
    #[arg(value_name = "IMGREF", required = true)]
    pub imgrefs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Path to the ostree repository.
    #[arg(value_name = "REPO")]
    pub repo: PathBuf,

    /// The image: ostree-unverified-image:TRANSPORT:NAME (or a plain TRANSPORT:NAME),
    /// ostree-remote-image:REMOTE:TRANSPORT:NAME (the commit's signature, checked with the keys
    /// of that ostree remote) or ostree-image-signed:TRANSPORT:NAME (containers-policy.json
    /// decides, see --policy).
    #[arg(value_name = "IMGREF")]
    pub imgref: String,

    /// Layers read at once (default 4).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs: Option<u64>,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub progress: ProgressArgs,

    /// Print a JSON report (plan, commits, dropped paths) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Only the final `Wrote:` line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct UnencapsulateArgs {
    /// Path to the ostree repository.
    #[arg(long, value_name = "REPO")]
    pub repo: PathBuf,

    /// The image, e.g. ostree-unverified-image:oci:/srv/os:1 or
    /// ostree-unverified-registry:quay.io/exampleos/os:latest (a plain TRANSPORT:NAME counts
    /// as unverified); ostree-remote-image:REMOTE:TRANSPORT:NAME and
    /// ostree-image-signed:TRANSPORT:NAME verify it (see `image pull`).
    #[arg(value_name = "IMGREF")]
    pub imgref: String,

    /// Point this ref at the imported commit.
    #[arg(long, value_name = "REF")]
    pub write_ref: Option<String>,

    /// Layers read at once (default 4).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs: Option<u64>,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub progress: ProgressArgs,

    /// Print a JSON report instead of `Imported: <checksum>`.
    #[arg(long)]
    pub json: bool,

    /// No progress output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct EncapsulateArgs {
    /// Path to the ostree repository.
    #[arg(long, value_name = "REPO")]
    pub repo: PathBuf,

    /// The ostree ref or commit checksum to export.
    pub rev: String,

    /// Destination image reference, e.g. containers-storage:localhost/os or oci:/srv/os:latest.
    #[arg(value_name = "IMGREF")]
    pub imgref: String,

    /// Additional label (repeatable); wins over labels derived from the commit.
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
    pub labels: Vec<String>,

    /// The image's CMD (repeat for each argument); overrides commit metadata ostree.container-cmd.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub cmd: Vec<String>,

    /// JSON file with the container `config` object to start from (Env, Entrypoint, ...).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Copy this commit metadata key to a label (repeatable; must exist).
    #[arg(long = "copymeta", value_name = "KEY")]
    pub copymeta: Vec<String>,

    /// Copy this commit metadata key to a label when present (repeatable).
    #[arg(long = "copymeta-opt", value_name = "KEY")]
    pub copymeta_opt: Vec<String>,

    /// Most layers the image may have, the commit layer included (at least 4).
    #[arg(long, value_name = "N")]
    pub max_layers: Option<u32>,

    /// Keep the component → layer layout of this earlier image, so an update changes only
    /// the layers whose content changed.
    #[arg(long, value_name = "IMGREF")]
    pub prior_build: Option<String>,

    /// Layer compression: gzip (default), zstd or none. containers-storage always stores
    /// layers uncompressed, so nothing is compressed for it.
    #[arg(long, value_name = "KIND")]
    pub compression: Option<String>,

    /// Compatibility with ostree-ext: accepted, same as the default.
    #[arg(long, hide = true)]
    pub compression_fast: bool,

    /// ostree-ext content-metadata JSON: which object goes to which layer.
    #[arg(long, value_name = "FILE")]
    pub contentmeta: Option<PathBuf>,

    /// Registry credentials file (as for skopeo/podman).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,

    /// Verify TLS for the destination registry (use --dest-tls-verify=false for a local one).
    #[arg(long = "dest-tls-verify", alias = "tls-verify", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,

    /// Worker threads for writing layers (default: all cores).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,

    /// Print a JSON report (digest, layers, sizes) on stdout instead of the digest.
    #[arg(long)]
    pub json: bool,

    /// No summary on stderr and no progress bars.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_ostree_ext_style_encapsulate() {
        let c = Cli::try_parse_from([
            "ostree-container",
            "export",
            "--repo=r",
            "main",
            "oci:/x",
            "--label",
            "a=b",
            "--cmd",
            "/bin/sh",
            "--cmd",
            "-c",
            "--dest-tls-verify=false",
            "--max-layers",
            "8",
        ])
        .unwrap();
        let Command::Encapsulate(a) = c.command else {
            panic!("not encapsulate")
        };
        assert_eq!(a.rev, "main");
        assert_eq!(a.cmd, vec!["/bin/sh", "-c"]);
        assert_eq!(a.tls_verify, Some(false));
        assert_eq!(a.max_layers, Some(8));
    }

    #[test]
    fn source_args_carry_the_policy() {
        let c = Cli::try_parse_from([
            "ostree-container",
            "unencapsulate",
            "--repo=r",
            "--policy",
            "/p.json",
            "ostree-image-signed:oci:/x",
        ])
        .unwrap();
        let Command::Unencapsulate(a) = c.command else {
            panic!("not unencapsulate")
        };
        assert_eq!(
            a.source.skopeo_options().policy.as_deref(),
            Some(std::path::Path::new("/p.json"))
        );
    }
}

/// How to reach a source image's registry.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Registry credentials file.
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,

    /// Verify TLS of the source registry (use --src-tls-verify=false for a local one).
    #[arg(long = "src-tls-verify", alias = "tls-verify", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,

    /// containers-policy.json that decides for ostree-image-signed: images (default: skopeo's,
    /// $HOME/.config/containers/policy.json if it exists, else /etc/containers/policy.json).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Give up when the source sends nothing for this many seconds (a stalled registry or
    /// store fails instead of hanging; default 60).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: Option<u64>,
}

impl SourceArgs {
    pub fn skopeo_options(&self) -> storage_bridge::transport::SkopeoOptions {
        let mut s = storage_bridge::transport::SkopeoOptions::default();
        s.authfile = self.authfile.clone();
        s.tls_verify = self.tls_verify;
        s.policy = self.policy.clone();
        s.idle_timeout = self.idle_timeout.map(std::time::Duration::from_secs);
        s
    }
}
