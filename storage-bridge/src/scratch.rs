//! Temporary directories that a killed run does not leave behind for good.
//!
//! Each one, `<parent>/<prefix>XXXXXX`, has a lock file beside it, `<same name>.lock`, which
//! its process holds (flock) for as long as it lives. Making a new one first sweeps the parent:
//! a directory whose lock file can be taken belongs to a process that is gone (killed, or its
//! machine rebooted), and goes with its lock. The lock sits beside the directory, not in it,
//! so a directory renamed into place carries no stray file; a live process in another PID
//! namespace keeps its lock as well as any other.

use anyhow::{Context, Result};
use rustix::fs::{flock, FlockOperation};
use std::fs::File;
use std::path::{Path, PathBuf};

/// A temporary directory and the lock that says its owner is alive.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    lock_path: PathBuf,
    _lock: File,
}

impl Scratch {
    /// A new directory `<parent>/<prefix>XXXXXX`, after sweeping what dead runs left there.
    pub fn new_in(parent: &Path, prefix: &str) -> Result<Self> {
        sweep(parent, prefix);
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
        let lock_path = lock_path_of(dir.path());
        let lock = File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        flock(&lock, FlockOperation::NonBlockingLockExclusive)
            .with_context(|| format!("locking {}", lock_path.display()))?;
        Ok(Scratch {
            dir: Some(dir),
            lock_path,
            _lock: lock,
        })
    }

    /// In the system's temporary directory (`TMPDIR`).
    pub fn new(prefix: &str) -> Result<Self> {
        Self::new_in(&std::env::temp_dir(), prefix)
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap_or(Path::new(""))
    }

    /// Keep the directory (it is renamed into place); only the lock goes.
    pub fn keep(mut self) -> PathBuf {
        self.dir
            .take()
            .map(tempfile::TempDir::keep)
            .unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // The directory first (TempDir's drop), then its lock.
        drop(self.dir.take());
        std::fs::remove_file(&self.lock_path).ok();
    }
}

fn lock_path_of(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    dir.with_file_name(name)
}

/// Remove the directories named `<prefix>…` in `parent` whose lock nobody holds.
fn sweep(parent: &Path, prefix: &str) {
    let Ok(list) = std::fs::read_dir(parent) else {
        return;
    };
    for e in list.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with(prefix) || name.ends_with(".lock") {
            continue;
        }
        let lock_path = lock_path_of(&e.path());
        // No lock file: not one of ours, or from before locks; leave it.
        let Ok(lock) = std::fs::OpenOptions::new().write(true).open(&lock_path) else {
            continue;
        };
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_ok() {
            std::fs::remove_dir_all(e.path()).ok();
            std::fs::remove_file(&lock_path).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_owners_directory_is_swept_a_live_one_kept() {
        let parent = tempfile::tempdir().unwrap();
        let live = Scratch::new_in(parent.path(), ".t-").unwrap();
        std::fs::write(live.path().join("blob"), "x").unwrap();
        // A dead run: directory and lock file, nobody holding the lock.
        let dead = parent.path().join(".t-dead01");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("blob"), "x").unwrap();
        std::fs::write(parent.path().join(".t-dead01.lock"), "").unwrap();
        // Not ours (no lock file): left alone.
        let other = parent.path().join(".t-other");
        std::fs::create_dir(&other).unwrap();
        let next = Scratch::new_in(parent.path(), ".t-").unwrap();
        assert!(!dead.exists());
        assert!(!parent.path().join(".t-dead01.lock").exists());
        assert!(
            live.path().join("blob").exists(),
            "a live owner's dir stays"
        );
        assert!(other.exists());
        let p = next.path().to_path_buf();
        let kept = next.keep();
        assert_eq!(kept, p);
        assert!(kept.exists() && !lock_path_of(&kept).exists());
        drop(live);
        let names: Vec<_> = std::fs::read_dir(parent.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
