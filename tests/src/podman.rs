//! A private container world for one test: storage (graph root + run root), `containers.conf`
//! (runc, cgroupfs, file events and locks, no network namespace, ulimits these machines allow),
//! `registries.conf`, an auth file and a temp dir, all under the test's directory.
//!
//! Commands that may reach containers/image run through `ns.sh`: a private mount namespace in
//! which `/var/lib` is read-only (and `/var/lib/containers`, when it exists, is an empty tmpfs),
//! because as root containers/image writes its blob-info cache there and has no option to move
//! it. Mount propagation is private, so the overlay mounts a store makes vanish with the
//! namespace: nothing is left mounted on the host.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PodmanEnv {
    pub dir: PathBuf,
    pub graphroot: PathBuf,
    pub runroot: PathBuf,
    pub containers_conf: PathBuf,
    pub storage_conf: PathBuf,
    pub registries_conf: PathBuf,
    pub auth: PathBuf,
    pub tmp: PathBuf,
    pub home: PathBuf,
    pub ns: PathBuf,
}

const NS_SH: &str = r#"#!/bin/sh
# ns.sh CMD...: CMD in a private mount namespace where /var/lib is read-only.
exec /usr/bin/unshare --mount --propagation private -- /bin/sh -c '
  /bin/mount -n -o bind,ro /var/lib /var/lib || exit 125
  if [ -d /var/lib/containers ]; then
    /bin/mount -n -t tmpfs -o size=64m,mode=0700 nsvlc /var/lib/containers || exit 125
  fi
  exec "$@"' ns "$@"
"#;

/// The hard `nofile` limit of this process (podman may not set more), from /proc/self/limits.
fn hard_nofile() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(4).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(1024)
}

impl PodmanEnv {
    pub fn new(base: &Path) -> Result<Self> {
        // Short names: podman's cleanup child refuses a run root over 50 characters, and
        // every `podman run` then waits out a 20 s timeout.
        let dir = base.join("c");
        let e = PodmanEnv {
            graphroot: dir.join("root"),
            runroot: dir.join("rr"),
            containers_conf: dir.join("containers.conf"),
            storage_conf: dir.join("storage.conf"),
            registries_conf: dir.join("registries.conf"),
            auth: dir.join("auth.json"),
            tmp: dir.join("tmp"),
            home: dir.join("home"),
            ns: dir.join("ns.sh"),
            dir,
        };
        if e.runroot.as_os_str().len() > 50 {
            anyhow::bail!(
                "the run root {} is over 50 characters: podman would stall; use a shorter temp dir",
                e.runroot.display()
            );
        }
        std::fs::create_dir_all(&e.tmp)?;
        std::fs::create_dir_all(&e.home)?;
        let nofile = hard_nofile();
        std::fs::write(
            &e.containers_conf,
            format!(
                "[containers]\nnetns = \"none\"\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc=32768:32768\"]\n\n\
                 [network]\nnetwork_config_dir = \"{d}/cni\"\n\n\
                 [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 tmp_dir = \"{d}/tmp/libpod\"\nlock_type = \"file\"\n",
                d = e.dir.display()
            ),
        )?;
        std::fs::write(
            &e.storage_conf,
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                e.graphroot.display(),
                e.runroot.display()
            ),
        )?;
        e.write_registries(&[])?;
        std::fs::write(&e.auth, "{\"auths\":{}}\n")?;
        std::fs::write(&e.ns, NS_SH)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&e.ns, std::fs::Permissions::from_mode(0o755))
            .context("chmod ns.sh")?;
        Ok(e)
    }

    /// Mark these registries (`127.0.0.1:PORT`) insecure (plain HTTP).
    pub fn write_registries(&self, insecure: &[String]) -> Result<()> {
        let mut s =
            String::from("unqualified-search-registries = []\nshort-name-mode = \"disabled\"\n");
        for r in insecure {
            s.push_str(&format!(
                "\n[[registry]]\nlocation = \"{r}\"\ninsecure = true\n"
            ));
        }
        std::fs::write(&self.registries_conf, s)?;
        Ok(())
    }

    /// Point a command at this private world.
    pub fn apply(&self, c: &mut Command) {
        c.env("CONTAINERS_CONF", &self.containers_conf)
            .env("CONTAINERS_STORAGE_CONF", &self.storage_conf)
            .env("CONTAINERS_REGISTRIES_CONF", &self.registries_conf)
            .env("REGISTRY_AUTH_FILE", &self.auth)
            .env("TMPDIR", &self.tmp)
            .env("HOME", &self.home);
        for v in [
            "XDG_RUNTIME_DIR",
            "XDG_DATA_HOME",
            "XDG_CONFIG_HOME",
            "_CONTAINERS_ROOTLESS_UID",
            "_CONTAINERS_USERNS_CONFIGURED",
        ] {
            c.env_remove(v);
        }
    }

    /// `program` inside the private mount namespace, with this world's environment.
    pub fn wrap(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(&self.ns);
        c.arg(program);
        self.apply(&mut c);
        c
    }

    /// `podman` in this world.
    pub fn podman(&self) -> Command {
        self.wrap(crate::require_tool("podman"))
    }

    /// `skopeo` in this world (1.9.3 ignores CONTAINERS_REGISTRIES_CONF: pass it explicitly).
    pub fn skopeo(&self) -> Command {
        let mut c = self.wrap(crate::require_tool("skopeo"));
        c.arg("--registries-conf").arg(&self.registries_conf);
        c
    }

    /// Stop this world's containers (a test that fails midway may leave one running).
    pub fn cleanup(&mut self) {
        if self.graphroot.exists() && storage_bridge::transport::find_program("podman").is_some() {
            self.podman()
                .args(["rm", "-a", "-f", "-t", "0"])
                .output()
                .ok();
        }
    }
}
