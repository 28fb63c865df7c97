//! What the fuzz targets share: a throwaway repository with a small base commit, and one
//! transaction per process that is thrown away every [`RESET_EVERY`] inputs so the staging
//! directory (every object an input wrote) stays small.

use ostree::gio;
use std::path::{Path, PathBuf};
use storage_bridge::commit::Repo;

/// Inputs run in one transaction before it is aborted and a new one opened.
pub const RESET_EVERY: u32 = 2000;

/// The base commit the derived layers are laid over: a file, its hardlink and a symlink, a
/// directory of two files, `/usr/etc`, `var` and the kept-empty top directories.
pub const BASE: &str = r#"
dir  usr/bin
file usr/bin/hello mode=0755 content="hello\n"
hard usr/bin/hello2 target=usr/bin/hello
link usr/bin/sh target=hello
dir  usr/lib/x
file usr/lib/x/a content="a\n"
file usr/lib/x/b content="b\n"
dir  usr/etc
file usr/etc/passwd content="root:x:0:0::/:/usr/bin/sh\n"
file usr/etc/hostname
dir  var/lib
dir  tmp mode=01777
dir  run
"#;

/// Top-level directories the path policy keeps empty.
pub const EMPTY_DIRS: [&str; 5] = ["run", "tmp", "proc", "sys", "dev"];

const PREFIX: &str = "ostree-bridge-fuzz-";

/// A repository in a temporary directory, inside an open transaction.
pub struct FuzzRepo {
    pub repo: Repo,
    /// The base commit's checksum.
    pub base: String,
    dir: PathBuf,
    runs: u32,
}

/// Remove the repositories of earlier fuzz processes that are gone (libFuzzer leaves by
/// `exit`, so no destructor of ours runs).
fn remove_stale(tmp: &Path) {
    let Ok(list) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in list.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|r| r.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            std::fs::remove_dir_all(e.path()).ok();
        }
    }
}

impl FuzzRepo {
    /// A new repository (`bare-user`, or `bare` where user xattrs are not supported) with the
    /// base commit, and an open transaction.
    pub fn new() -> Self {
        let tmp = std::env::temp_dir();
        remove_stale(&tmp);
        let dir = tmp.join(format!("{PREFIX}{}-repo", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let repo = [ostree::RepoMode::BareUser, ostree::RepoMode::Bare]
            .into_iter()
            .find_map(|mode| {
                std::fs::remove_dir_all(&dir).ok();
                let repo = storage_bridge::fixture::create_repo(&dir, mode).ok()?;
                let f = storage_bridge::fixture::Fixture::parse(BASE).expect("base fixture");
                let base = f.commit(&repo, "base").ok()?;
                Some((repo, base))
            })
            .expect("creating a bare-user or bare repository");
        let (repo, base) = repo;
        repo.prepare_transaction(gio::Cancellable::NONE)
            .expect("opening the transaction");
        FuzzRepo {
            repo,
            base,
            dir,
            runs: 0,
        }
    }

    /// Count an input; every [`RESET_EVERY`], throw the transaction's objects away.
    pub fn tick(&mut self) {
        self.runs += 1;
        if self.runs % RESET_EVERY == 0 {
            storage_bridge::commit::abort_and_discard(&self.repo);
            self.repo
                .prepare_transaction(gio::Cancellable::NONE)
                .expect("reopening the transaction");
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Default for FuzzRepo {
    fn default() -> Self {
        Self::new()
    }
}
