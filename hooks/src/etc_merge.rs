//! What the `/etc` merge of a new deployment does: which local changes it keeps, which image
//! changes it takes, and where both changed the same file (ostree keeps the local one).
//!
//! Local changes = the old deployment's `/etc` against its `/usr/etc`; image changes = the old
//! deployment's `/usr/etc` against the new one's. Both are our own deployments on the host.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The merge, by path relative to `/etc`.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct EtcReport {
    /// Local changes (added, modified or removed) carried into the new deployment.
    pub kept_local: Vec<String>,
    /// Changes of the new image that reach `/etc`.
    pub from_image: Vec<String>,
    /// Changed both locally and by the image: the local version wins.
    pub conflicts: Vec<String>,
}

/// (type, mode, uid, gid, content digest or link target) of one entry.
type EntryState = (char, u32, u32, u32, Vec<u8>);
/// Every entry under a directory, by relative path.
type Snapshot = BTreeMap<String, EntryState>;

/// The state of every entry under `dir`.
fn snapshot(dir: &Path) -> Result<Snapshot> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let p = if rel.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(&rel)
        };
        for e in std::fs::read_dir(&p).with_context(|| format!("reading {}", p.display()))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let md = std::fs::symlink_metadata(e.path())?;
            let (kind, data) = if md.file_type().is_symlink() {
                (
                    'l',
                    std::fs::read_link(e.path())?
                        .to_string_lossy()
                        .as_bytes()
                        .to_vec(),
                )
            } else if md.is_dir() {
                stack.push(r.clone());
                ('d', Vec::new())
            } else if md.is_file() {
                let mut h = Sha256::new();
                std::io::copy(&mut std::fs::File::open(e.path())?, &mut h)?;
                ('f', h.finalize().to_vec())
            } else {
                ('o', Vec::new())
            };
            out.insert(r, (kind, md.mode() & 0o7777, md.uid(), md.gid(), data));
        }
    }
    Ok(out)
}

fn changed(
    a: &BTreeMap<String, (char, u32, u32, u32, Vec<u8>)>,
    b: &BTreeMap<String, (char, u32, u32, u32, Vec<u8>)>,
) -> BTreeSet<String> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// Compare the old deployment's `/etc` and `/usr/etc` with the new deployment's `/usr/etc`.
pub fn report(old_deployment: &Path, new_deployment: &Path) -> Result<EtcReport> {
    let old_etc = snapshot(&old_deployment.join("etc"))?;
    let old_defaults = snapshot(&old_deployment.join("usr/etc"))?;
    let new_defaults = snapshot(&new_deployment.join("usr/etc"))?;
    let local = changed(&old_defaults, &old_etc);
    let image = changed(&old_defaults, &new_defaults);
    Ok(EtcReport {
        kept_local: local.difference(&image).cloned().collect(),
        from_image: image.difference(&local).cloned().collect(),
        conflicts: local.intersection(&image).cloned().collect(),
    })
}
