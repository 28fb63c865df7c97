//! The integration-test harness: real ostree, skopeo, podman and docker-registry, each test in
//! its own temp dir with a private containers-storage (graph root + run root), its own
//! `containers.conf` (runc, ulimits that work on these machines) and `registries.conf`.
//! Nothing touches `/var/lib/containers` or the user's configuration.
//!
//! A missing tool fails the test with a message that says how to install it; it never passes.

pub mod oci;
pub mod podman;
pub mod rawtar;
pub mod registry;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use storage_bridge::fixture::{Fixture, SAMPLE};

/// The workspace's target directory for this build profile (where `ostree-container` is).
pub fn target_dir() -> PathBuf {
    // Tests run from target/<profile>/deps/<test-binary>, binaries from target/<profile>/.
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("exe dir");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("profile dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Path of a binary built by this workspace.
pub fn workspace_bin(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace` first (README's test command does)",
        p.display()
    );
    p
}

/// Path of a required external tool; panics with the install hint when it is missing.
pub fn require_tool(name: &str) -> PathBuf {
    storage_bridge::transport::find_program(name).unwrap_or_else(|| {
        panic!("required tool {name:?} is not installed: run scripts/install-deps.sh (as root)")
    })
}

/// Run a command, failing with its stderr when it fails.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Run and return stdout as a string.
pub fn run_stdout(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8(run(cmd)?.stdout)?)
}

/// One test's private world.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub podman: podman::PodmanEnv,
}

impl TestEnv {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ostree-bridge-test-")
            .tempdir_in(
                std::env::var_os("OSTREE_BRIDGE_TEST_TMP")
                    .map(PathBuf::from)
                    .unwrap_or_else(std::env::temp_dir),
            )
            .expect("creating the test's temp dir");
        let podman = podman::PodmanEnv::new(dir.path()).expect("writing private container configs");
        TestEnv { dir, podman }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh `bare` repo at `name` with `text` committed under `refname`; returns the checksum.
    pub fn repo_with(&self, name: &str, refname: &str, text: &str) -> Result<(PathBuf, String)> {
        let p = self.path().join(name);
        let repo = storage_bridge::fixture::create_repo(&p, ostree::RepoMode::Bare)?;
        let csum = Fixture::parse(text)?.commit(&repo, refname)?;
        Ok((p, csum))
    }

    /// An empty `bare` repo at `name` (made by the ostree CLI).
    pub fn new_repo(&self, name: &str) -> PathBuf {
        let p = self.path().join(name);
        run(Command::new(require_tool("ostree"))
            .arg("init")
            .arg(format!("--repo={}", p.display()))
            .arg("--mode=bare"))
        .expect("ostree init");
        p
    }

    /// `podman build -t TAG` of a Containerfile with this content (no network, no pulls).
    pub fn podman_build(&self, tag: &str, containerfile: &str) -> Result<()> {
        let ctx = self
            .path()
            .join(format!("ctx-{}", tag.replace(['/', ':'], "_")));
        std::fs::create_dir_all(&ctx)?;
        std::fs::write(ctx.join("Containerfile"), containerfile)?;
        run(self
            .podman
            .podman()
            .args(["build", "-q", "--network=none", "--pull=never", "-t", tag])
            .arg(&ctx))?;
        Ok(())
    }

    /// `ostree-container encapsulate -q --repo REPO REV DEST EXTRA…`; the manifest digest.
    pub fn encapsulate(
        &self,
        repo: &Path,
        rev: &str,
        dest: &str,
        extra: &[&str],
    ) -> Result<String> {
        let out = run_stdout(
            self.ostree_container()
                .args(["encapsulate", "-q", "--repo"])
                .arg(repo)
                .arg(rev)
                .arg(dest)
                .args(extra),
        )?;
        Ok(out.trim().to_string())
    }

    /// `ostree-container image pull --json REPO IMGREF`, parsed; panics with the output when it
    /// fails.
    pub fn pull_json(&self, repo: &Path, imgref: &str) -> serde_json::Value {
        let out = run_stdout(
            self.ostree_container()
                .args(["image", "pull", "--json"])
                .arg(repo)
                .arg(imgref),
        )
        .unwrap_or_else(|e| panic!("pulling {imgref}: {e:#}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// `ostree-container` in this test's private container world.
    pub fn ostree_container(&self) -> Command {
        self.podman.wrap(workspace_bin("ostree-container"))
    }

    /// Any program in this test's private container world.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.podman.wrap(program)
    }

    /// The containers-storage reference of `name` in this test's private store.
    pub fn cstor_ref(&self, name: &str) -> String {
        format!(
            "containers-storage:[overlay@{}+{}]{name}",
            self.podman.graphroot.display(),
            self.podman.runroot.display()
        )
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.podman.cleanup();
        unlock_deployments(self.path());
    }
}

/// ostree marks deployment roots immutable (`chattr +i`); clear that on the sysroots directly
/// inside `dir` so the test's temp dir can be removed.
pub fn unlock_deployments(dir: &Path) {
    let Ok(children) = std::fs::read_dir(dir) else {
        return;
    };
    for sysroot in children.flatten() {
        let Ok(staterooots) = std::fs::read_dir(sysroot.path().join("ostree/deploy")) else {
            continue;
        };
        for st in staterooots.flatten() {
            let Ok(deps) = std::fs::read_dir(st.path().join("deploy")) else {
                continue;
            };
            for d in deps.flatten() {
                if d.path().is_dir() {
                    Command::new("chattr").arg("-i").arg(d.path()).status().ok();
                }
            }
        }
    }
}

/// A throwaway sysroot at `dir/name` with stateroot `stateroot` (`ostree admin init-fs`,
/// `os-init`).
pub fn new_sysroot(dir: &Path, name: &str, stateroot: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::create_dir_all(&p)?;
    run(Command::new(require_tool("ostree"))
        .args(["admin", "init-fs"])
        .arg(&p))?;
    run(Command::new("ostree").args([
        "admin",
        "os-init",
        &format!("--sysroot={}", p.display()),
        stateroot,
    ]))?;
    Ok(p)
}

/// The peer (ostree-ext 0.15.3) binary, built from `../shared/bench/peer-ostree-ext` with
/// its build script (cached under ~/.cache/ostree-bridge/peer-target).
pub fn peer_binary() -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/build-peer.sh");
    if !script.exists() {
        bail!("{} not found", script.display());
    }
    let out = run(Command::new("bash").arg(&script))?;
    let path = String::from_utf8(out.stdout)?
        .trim()
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    let p = PathBuf::from(path);
    if !p.exists() {
        bail!("build-peer.sh printed {} which does not exist", p.display());
    }
    Ok(p)
}
