//! A private `docker-registry` (Debian's distribution 2.8) on a free loopback port, stopped on
//! drop.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
}

impl Registry {
    /// Start one with its storage under `dir`.
    pub fn start(dir: &Path) -> Result<Self> {
        let bin = crate::require_tool("docker-registry");
        std::fs::create_dir_all(dir.join("data"))?;
        let cfg = dir.join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\n",
                dir.join("data").display()
            ),
        )?;
        let log = dir.join("registry.log");
        let mut c = Command::new(bin);
        c.arg("serve").arg(&cfg).stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("REGISTRY_") {
                c.env_remove(k);
            }
        }
        let f = std::fs::File::create(&log)?;
        c.stdout(f.try_clone()?).stderr(f);
        let child = c.spawn().context("starting docker-registry")?;
        let mut r = Registry {
            child,
            addr: String::new(),
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(i) = text.find("listening on 127.0.0.1:") {
                let rest = &text[i + "listening on ".len()..];
                let addr: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                if std::net::TcpStream::connect(&addr).is_ok() {
                    r.addr = addr;
                    return Ok(r);
                }
            }
            if let Ok(Some(st)) = r.child.try_wait() {
                bail!("docker-registry exited ({st}): {text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "docker-registry did not start listening within 20 s; log: {}",
            log.display()
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
