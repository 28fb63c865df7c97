//! Disk-space checks before a deploy writes anything it cannot take back.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// Room kept free beyond the estimate on every file system.
pub const MARGIN: u64 = 16 << 20;

/// Free bytes for an unprivileged writer... and root: we run as root, so count all free blocks
/// except the reserve a full file system would eat into anyway (`f_bavail`).
pub fn available(path: &Path) -> Result<u64> {
    let s = rustix::fs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

fn human(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

/// Fail unless `path`'s file system has `need` bytes (plus [`MARGIN`]) free.
pub fn require(path: &Path, need: u64, what: &str) -> Result<()> {
    let have = available(path)?;
    let want = need.saturating_add(MARGIN);
    if have < want {
        bail!(
            "not enough space for {what} on the file system of {}: need about {} (with a {} margin), {} free; nothing was changed",
            path.display(),
            human(want),
            human(MARGIN),
            human(have)
        );
    }
    Ok(())
}
