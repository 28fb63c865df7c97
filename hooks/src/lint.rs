//! `container lint`: checks a root filesystem (the last `RUN` of a Containerfile) for what
//! would make it fail or lose content when imported and deployed.
//!
//! Fatal: a kernel count other than one under `/usr/lib/modules/$KVER/vmlinuz` (when the tree
//! is meant to boot), names that are not UTF-8, kargs.d files that do not parse. Warnings:
//! content the importer drops (`/opt`, `/srv`, `/home`, `/root`, `/mnt`, `/media`, `/boot`,
//! `/usr/local` is kept but local-admin territory…) or seeds only once (`/var`), and files under
//! `/run` and `/tmp`.

use crate::kargs;
use anyhow::{Context, Result};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Example paths kept per finding.
const EXAMPLES: usize = 10;
/// Directories the walk never enters (kernel and runtime file systems).
const SKIP: [&str; 3] = ["proc", "sys", "dev"];
/// Top-level directories the importer drops.
const DROPPED: [&str; 7] = ["opt", "srv", "home", "root", "mnt", "media", "boot"];

/// One finding.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct Finding {
    /// "fatal" or "warning".
    pub severity: &'static str,
    /// Short rule name, e.g. "kernel", "non-utf8-name", "var-content".
    pub rule: &'static str,
    pub message: String,
    pub count: usize,
    pub paths: Vec<String>,
}

/// Everything lint found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LintReport {
    pub rootfs: String,
    pub findings: Vec<Finding>,
}

impl LintReport {
    pub fn fatal(&self) -> bool {
        self.findings.iter().any(|f| f.severity == "fatal")
    }
}

#[derive(Default)]
struct Acc {
    count: usize,
    paths: Vec<String>,
}

impl Acc {
    fn add(&mut self, p: String) {
        self.count += 1;
        if self.paths.len() < EXAMPLES {
            self.paths.push(p);
        }
    }
}

fn walk(root: &Path, rel: &str, f: &mut dyn FnMut(&str, &std::fs::Metadata, bool)) -> Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let utf8 = std::str::from_utf8(name.as_bytes()).is_ok();
        let n = String::from_utf8_lossy(name.as_bytes()).to_string();
        let p = if rel.is_empty() {
            n
        } else {
            format!("{rel}/{n}")
        };
        let md = e.metadata()?;
        f(&p, &md, utf8);
        if md.is_dir() && !(rel.is_empty() && SKIP.contains(&p.as_str())) && utf8 {
            walk(root, &p, f)?;
        }
    }
    Ok(())
}

/// Lint the root filesystem at `root`.
pub fn lint(root: &Path) -> Result<LintReport> {
    let mut non_utf8 = Acc::default();
    let mut var = Acc::default();
    let mut runtmp = Acc::default();
    let mut dropped = Acc::default();
    let mut local = Acc::default();
    walk(root, "", &mut |p, md, utf8| {
        if !utf8 {
            non_utf8.add(format!("/{p}"));
        }
        let (top, rest) = p.split_once('/').unwrap_or((p, ""));
        if md.is_dir() {
            return;
        }
        match top {
            "var" if !rest.is_empty() => var.add(format!("/{p}")),
            "run" | "tmp" if !rest.is_empty() => runtmp.add(format!("/{p}")),
            t if DROPPED.contains(&t) => dropped.add(format!("/{p}")),
            "usr" if rest.starts_with("local/") => local.add(format!("/{p}")),
            _ => {}
        }
    })?;
    let mut findings = Vec::new();
    let mut push = |severity, rule, message: String, acc: Acc| {
        if acc.count > 0 {
            findings.push(Finding {
                severity,
                rule,
                message,
                count: acc.count,
                paths: acc.paths,
            })
        }
    };
    push(
        "fatal",
        "non-utf8-name",
        "names that are not UTF-8 cannot be stored in ostree".into(),
        non_utf8,
    );
    // Kernel.
    let modules = root.join("usr/lib/modules");
    let mut kernels = Acc::default();
    if let Ok(rd) = std::fs::read_dir(&modules) {
        let mut v: Vec<_> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("vmlinuz").is_file())
            .map(|e| {
                format!(
                    "/usr/lib/modules/{}/vmlinuz",
                    e.file_name().to_string_lossy()
                )
            })
            .collect();
        v.sort();
        for k in v {
            kernels.add(k);
        }
    }
    if kernels.count != 1 {
        let n = kernels.count;
        let msg =
            format!("a bootable image needs exactly one /usr/lib/modules/$KVER/vmlinuz, found {n}");
        findings.push(Finding {
            severity: "fatal",
            rule: "kernel",
            message: msg,
            count: n,
            paths: kernels.paths,
        });
    }
    // kargs.d.
    let kdir = root.join(kargs::KARGS_DIR);
    if let Ok(rd) = std::fs::read_dir(&kdir) {
        let mut files = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with(".toml") {
                files.push((name, std::fs::read_to_string(e.path()).unwrap_or_default()));
            }
        }
        files.sort();
        for (name, text) in &files {
            if let Err(e) = kargs::parse_file(name, text, std::env::consts::ARCH) {
                findings.push(Finding {
                    severity: "fatal",
                    rule: "kargs",
                    message: format!("{e:#}"),
                    count: 1,
                    paths: vec![format!("/{}/{name}", kargs::KARGS_DIR)],
                });
            }
        }
    }
    let mut push = |rule, message: &str, acc: Acc| {
        if acc.count > 0 {
            findings.push(Finding {
                severity: "warning",
                rule,
                message: message.to_string(),
                count: acc.count,
                paths: acc.paths,
            })
        }
    };
    push("var-content", "/var is seeded only at the first deployment: later images' /var content never reaches a deployed host (use tmpfiles.d)", var);
    push(
        "run-tmp-content",
        "files under /run and /tmp are dropped on import",
        runtmp,
    );
    push(
        "dropped-toplevel",
        "content outside /usr, /etc and /var is dropped on import (move it under /usr)",
        dropped,
    );
    push(
        "usr-local",
        "/usr/local content ships in the image; on many hosts /usr/local is a link into /var",
        local,
    );
    Ok(LintReport {
        rootfs: root.display().to_string(),
        findings,
    })
}
