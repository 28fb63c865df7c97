//! Which component owns each content object.
//!
//! In order of precedence: the `user.component` xattr on the file, then on the nearest
//! directory above it; the initramfs (always churn); `--contentmeta`; the dpkg database
//! (`usr/lib/sysimage/dpkg`, `usr/share/factory/var/lib/dpkg`, `var/lib/dpkg`); the rpm
//! database (`usr/lib/sysimage/rpm`, `usr/share/rpm`, `var/lib/rpm`, read with the `rpm` tool).
//! Content no source owns is "unpackaged" (churn) when a database exists, and otherwise grouped
//! by its directory (`dir:usr/lib/x86_64-linux-gnu`), which keeps groups stable across builds.

use crate::commit::{open_file, CommitTree, FileMeta, Repo};
use crate::labels::{COMPONENT_XATTR, UNPACKAGED};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;

/// Largest package-database file read into memory (a `.list` file or an rpmdb).
const MAX_DB_FILE: u64 = 512 << 20;
/// Directory depth of fallback groups.
const FALLBACK_DEPTH: usize = 3;

const DPKG_DIRS: [&str; 3] = [
    "usr/lib/sysimage/dpkg",
    "usr/share/factory/var/lib/dpkg",
    "var/lib/dpkg",
];
const RPM_DIRS: [&str; 3] = ["usr/lib/sysimage/rpm", "usr/share/rpm", "var/lib/rpm"];
const RPM_DB_FILES: [&str; 3] = ["rpmdb.sqlite", "Packages.db", "Packages"];

/// ostree-ext's `--contentmeta` document.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ContentMeta {
    pub version: u32,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Layer id → human-readable name.
    pub layers: BTreeMap<String, String>,
    /// Content checksum → layer id.
    pub mapping: BTreeMap<String, String>,
    #[serde(default)]
    pub ordered: Option<bool>,
}

impl ContentMeta {
    pub fn parse(data: &[u8]) -> Result<Self> {
        let m: ContentMeta = serde_json::from_slice(data).context("parsing contentmeta JSON")?;
        if m.version != 1 {
            bail!(
                "contentmeta version {} is not supported (only 1)",
                m.version
            );
        }
        if m.ordered == Some(true) {
            bail!("contentmeta: ordered mappings are not supported");
        }
        Ok(m)
    }
}

/// What the sources found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceReport {
    /// Sources that owned at least one object ("xattr", "dpkg", "rpm", "contentmeta", "directory").
    pub sources: Vec<String>,
    /// Packages found in the database.
    pub packages: usize,
    /// Objects no source owned.
    pub unowned_objects: usize,
    pub warnings: Vec<String>,
}

/// Component names go into a comma-separated annotation: keep them printable and comma-free.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c == ',' || c.is_control() { '_' } else { c })
        .collect()
}

fn is_initramfs(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    (path.starts_with("usr/lib/modules/") && name == "initramfs.img")
        || (path.starts_with("boot/") && name.starts_with("initramfs"))
        || (path.starts_with("boot/") && name.starts_with("initrd.img"))
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

/// Content object → (component, churn).
pub type Assignment = BTreeMap<String, (String, bool)>;

/// Object → (component, churn), plus a report.
pub fn assign(
    repo: &Repo,
    tree: &CommitTree,
    paths: &BTreeMap<String, Vec<String>>,
    metas: &HashMap<String, FileMeta>,
    contentmeta: Option<&ContentMeta>,
) -> Result<(Assignment, SourceReport)> {
    let mut report = SourceReport::default();
    let resolver = PathResolver::new(tree, metas);

    // Directory-level `user.component`, inherited downwards.
    let mut dir_component: HashMap<&str, String> = HashMap::new();
    for d in &tree.dirs {
        let own = tree.dirmetas[&d.dirmeta]
            .1
            .xattrs
            .iter()
            .find(|(k, _)| k.as_slice() == COMPONENT_XATTR.as_bytes())
            .map(|(_, v)| sanitize(&String::from_utf8_lossy(v)));
        let inherited = own.or_else(|| dir_component.get(parent(&d.path)).cloned());
        if let Some(c) = inherited {
            dir_component.insert(d.path.as_str(), c);
        }
    }

    let mut owners: HashMap<String, String> = HashMap::new();
    let mut db = None;
    if contentmeta.is_none() {
        if let Some(found) = read_dpkg(repo, tree, &resolver, &mut report)? {
            owners = found;
            db = Some("dpkg");
        } else if let Some(found) = read_rpm(repo, tree, &resolver, &mut report)? {
            owners = found;
            db = Some("rpm");
        }
    }

    let mut used: BTreeMap<&str, ()> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (obj, ps) in paths {
        let meta = &metas[obj];
        let first = ps.first().map(String::as_str).unwrap_or("");
        let pick: (String, bool, &str) = if let Some(v) = meta.xattr(COMPONENT_XATTR) {
            (sanitize(&String::from_utf8_lossy(v)), false, "xattr")
        } else if let Some(c) = ps.iter().find_map(|p| dir_component.get(parent(p))) {
            (c.clone(), false, "xattr")
        } else if ps.iter().any(|p| is_initramfs(p)) {
            (UNPACKAGED.to_string(), true, "initramfs")
        } else if let Some(cm) = contentmeta {
            match cm.mapping.get(obj) {
                Some(id) => {
                    let name = cm.layers.get(id).unwrap_or(id);
                    (sanitize(name), id == UNPACKAGED, "contentmeta")
                }
                None => (UNPACKAGED.to_string(), true, "unowned"),
            }
        } else if let Some(owner) = ps.iter().filter_map(|p| owners.get(p.as_str())).min() {
            (owner.clone(), false, db.unwrap_or("db"))
        } else if db.is_some() {
            (UNPACKAGED.to_string(), true, "unowned")
        } else {
            let dir = parent(first);
            let group: Vec<&str> = dir
                .split('/')
                .filter(|s| !s.is_empty())
                .take(FALLBACK_DEPTH)
                .collect();
            let group = if group.is_empty() {
                "/".to_string()
            } else {
                group.join("/")
            };
            (sanitize(&format!("dir:{group}")), false, "directory")
        };
        if pick.2 == "unowned" {
            report.unowned_objects += 1;
        } else {
            used.insert(pick.2, ());
        }
        out.insert(obj.clone(), (pick.0, pick.1));
    }
    report.sources = used.into_keys().map(str::to_string).collect();
    Ok((out, report))
}

/// Maps database paths (`/bin/ls`, `/etc/passwd`) to commit paths (`usr/bin/ls`,
/// `usr/etc/passwd`), following top-level symlinks such as `bin -> usr/bin`.
struct PathResolver {
    toplinks: HashMap<String, String>,
}

impl PathResolver {
    fn new(tree: &CommitTree, metas: &HashMap<String, FileMeta>) -> Self {
        let mut toplinks = HashMap::new();
        for (name, csum) in &tree.dirs[0].files {
            if let Some(t) = metas.get(csum).and_then(|m| m.symlink.as_deref()) {
                let t = t.trim_start_matches('/').trim_end_matches('/');
                if !t.is_empty() && !t.split('/').any(|c| c == ".." || c == ".") {
                    toplinks.insert(name.clone(), t.to_string());
                }
            }
        }
        PathResolver { toplinks }
    }

    fn resolve(&self, p: &str) -> Option<String> {
        let p = p.trim_start_matches("./").trim_start_matches('/');
        if p.is_empty() || p.split('/').any(|c| c == ".." || c == "." || c.is_empty()) {
            return None;
        }
        let (first, rest) = p.split_once('/').unwrap_or((p, ""));
        let mut out = match self.toplinks.get(first) {
            Some(t) if !rest.is_empty() => format!("{t}/{rest}"),
            _ => p.to_string(),
        };
        if out == "etc" || out.starts_with("etc/") {
            out = format!("usr/{out}");
        }
        Some(out)
    }
}

fn find_dir<'a>(tree: &'a CommitTree, path: &str) -> Option<&'a crate::commit::DirNode> {
    tree.dirs.iter().find(|d| d.path == path)
}

fn read_object(repo: &Repo, csum: &str, what: &str) -> Result<Vec<u8>> {
    let (meta, content) = open_file(repo, csum)?;
    if meta.size > MAX_DB_FILE {
        bail!(
            "{what} is {} bytes, over the {MAX_DB_FILE} byte limit",
            meta.size
        );
    }
    let mut buf = Vec::with_capacity(meta.size as usize);
    if let Some(mut r) = content {
        r.read_to_end(&mut buf)
            .with_context(|| format!("reading {what}"))?;
    }
    Ok(buf)
}

fn read_dpkg(
    repo: &Repo,
    tree: &CommitTree,
    resolver: &PathResolver,
    report: &mut SourceReport,
) -> Result<Option<HashMap<String, String>>> {
    let Some(info) = DPKG_DIRS
        .iter()
        .find_map(|d| find_dir(tree, &format!("{d}/info")))
    else {
        return Ok(None);
    };
    let mut owners: HashMap<String, String> = HashMap::new();
    let mut packages = 0;
    for (name, csum) in &info.files {
        let Some(pkg) = name.strip_suffix(".list") else {
            continue;
        };
        let data = read_object(repo, csum, &format!("{}/{name}", info.path))?;
        packages += 1;
        let pkg = sanitize(pkg);
        for line in String::from_utf8_lossy(&data).lines() {
            if let Some(p) = resolver.resolve(line) {
                // Several owners (diversions, shared files): the smallest name wins.
                owners
                    .entry(p)
                    .and_modify(|o| {
                        if pkg < *o {
                            o.clone_from(&pkg)
                        }
                    })
                    .or_insert_with(|| pkg.clone());
            }
        }
    }
    if packages == 0 {
        return Ok(None);
    }
    report.packages = packages;
    Ok(Some(owners))
}

fn read_rpm(
    repo: &Repo,
    tree: &CommitTree,
    resolver: &PathResolver,
    report: &mut SourceReport,
) -> Result<Option<HashMap<String, String>>> {
    let Some(dbdir) = RPM_DIRS.iter().find_map(|d| {
        find_dir(tree, d).filter(|n| {
            n.files
                .iter()
                .any(|(f, _)| RPM_DB_FILES.contains(&f.as_str()))
        })
    }) else {
        return Ok(None);
    };
    let Some(rpm) = crate::transport::find_program("rpm") else {
        report.warnings.push(format!(
            "/{} holds an rpm database, but the rpm tool is not installed; grouping by directory",
            dbdir.path
        ));
        return Ok(None);
    };
    let tmp = tempfile::tempdir().context("creating a directory for the rpm database")?;
    for (name, csum) in &dbdir.files {
        let data = read_object(repo, csum, &format!("{}/{name}", dbdir.path))?;
        if name.contains('/') || name.starts_with('.') {
            continue;
        }
        std::fs::write(tmp.path().join(name), data)?;
    }
    let out = std::process::Command::new(rpm)
        .arg("--dbpath")
        .arg(tmp.path())
        // rpm may create ~/.rpmdb: keep it in the temp dir.
        .env("HOME", tmp.path())
        .args(["-qa", "--qf", "[%{=NAME}\t%{FILENAMES}\n]"])
        .stdin(std::process::Stdio::null())
        .output()
        .context("running rpm to read the package database")?;
    if !out.status.success() {
        report.warnings.push(format!(
            "rpm could not read /{}: {}; grouping by directory",
            dbdir.path,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
        return Ok(None);
    }
    let mut owners: HashMap<String, String> = HashMap::new();
    let mut pkgs = std::collections::BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((pkg, path)) = line.split_once('\t') else {
            continue;
        };
        let pkg = sanitize(pkg);
        pkgs.insert(pkg.clone());
        if let Some(p) = resolver.resolve(path) {
            owners
                .entry(p)
                .and_modify(|o| {
                    if pkg < *o {
                        o.clone_from(&pkg)
                    }
                })
                .or_insert(pkg);
        }
    }
    if pkgs.is_empty() {
        let err = String::from_utf8_lossy(&out.stderr);
        if !err.trim().is_empty() {
            report.warnings.push(format!(
                "rpm listed no packages in /{}: {}",
                dbdir.path,
                err.trim()
            ));
        }
        return Ok(None);
    }
    report.packages = pkgs.len();
    Ok(Some(owners))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_follows_toplinks_and_etc() {
        let r = PathResolver {
            toplinks: [("bin".to_string(), "usr/bin".to_string())].into(),
        };
        assert_eq!(r.resolve("/bin/ls").as_deref(), Some("usr/bin/ls"));
        assert_eq!(r.resolve("/etc/passwd").as_deref(), Some("usr/etc/passwd"));
        assert_eq!(r.resolve("/usr/lib/x").as_deref(), Some("usr/lib/x"));
        assert_eq!(r.resolve("/."), None);
        assert_eq!(r.resolve("/../x"), None);
    }

    #[test]
    fn initramfs_is_recognized() {
        assert!(is_initramfs("usr/lib/modules/6.1.0/initramfs.img"));
        assert!(!is_initramfs("usr/lib/modules/6.1.0/vmlinuz"));
    }

    #[test]
    fn contentmeta_parses_and_checks_version() {
        let ok = br#"{"version":1,"layers":{"a":"pkg-a"},"mapping":{"00":"a"}}"#;
        assert_eq!(ContentMeta::parse(ok).unwrap().layers["a"], "pkg-a");
        let bad = br#"{"version":2,"layers":{},"mapping":{}}"#;
        assert!(ContentMeta::parse(bad)
            .unwrap_err()
            .to_string()
            .contains("version 2"));
    }
}
