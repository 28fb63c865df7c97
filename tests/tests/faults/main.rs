//! Faults (issue 6): processes killed at random points, a full disk, a source that stalls.
//!
//! - SIGKILL at random points, spread over the measured duration of an uninterrupted run, of
//!   `encapsulate` (to a new `oci:` dir, to an existing layout with another tag, to
//!   containers-storage), `image pull` (from `oci:` and containers-storage) and `unencapsulate`.
//!   After each kill: the repo passes `ostree fsck` and every ref names a complete commit; an
//!   export's destination is absent, unchanged or a complete image that imports to the right
//!   commit; the rerun succeeds with the expected commit or digest and leaves no temporary
//!   files of its own. Objects a killed import had staged are not rewritten by the rerun
//!   (libostree reuses the staging directory; the inode of each object survives).
//! - ENOSPC on a small tmpfs: `image pull` and `encapsulate` fail naming the layer and the full
//!   disk, and give the space back.
//! - A registry behind a TCP proxy that stops sending in the middle of a blob: `image pull
//!   --idle-timeout 3` fails within a bound, saying nothing arrived, and leaves the repo clean.
//!
//! Kills per operation: `OB_FAULT_KILLS=N` (default 4, six operations: 24 kills in CI); e.g.
//! `OB_FAULT_KILLS=1000 cargo test -p ostree-bridge-tests --test faults` for a long run.

use ostree_bridge_tests::oci::Layout;
use ostree_bridge_tests::registry::Registry;
use ostree_bridge_tests::{run, run_stdout, TestEnv};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod disk_full;
mod kills_export;
mod kills_import;
mod stall;

/// Landed kills per operation in CI (six operations: 24 in all).
const CI_KILLS: usize = 4;

fn kills_per_op() -> usize {
    std::env::var("OB_FAULT_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CI_KILLS)
}

/// xorshift64, seeded from the clock (the seed is printed, to replay a failure by reading it).
struct Rng(u64);
impl Rng {
    fn new(name: &str) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("{name}: seed {seed}");
        Rng(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Ten components of 300 kB each, and eighty small files: several layers, each taking long
/// enough for kills to land inside it.
fn os_text(flavour: &str) -> String {
    let mut t = format!("subject \"faults {flavour}\"\nmeta version=1\n");
    for i in 0..10 {
        t.push_str(&format!(
            "file usr/share/c{i}/data size={} xattr.user.component=c{i}\n",
            300_000 + i
        ));
    }
    for i in 0..80 {
        t.push_str(&format!("file usr/lib/small/f{i} size={}\n", 1000 + i));
    }
    t
}

fn ostree(repo: &Path) -> Command {
    let mut c = Command::new("ostree");
    c.arg(format!("--repo={}", repo.display()));
    c
}

fn init_repo(path: &Path) {
    std::fs::remove_dir_all(path).ok();
    run(Command::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", path.display()))
        .arg("--mode=bare"))
    .unwrap();
}

/// `ostree fsck` is clean and every ref names a commit that is present and not partial.
fn assert_repo_sound(repo: &Path) -> BTreeMap<String, String> {
    run(ostree(repo).arg("fsck")).unwrap_or_else(|e| panic!("fsck {}: {e:#}", repo.display()));
    let mut refs = BTreeMap::new();
    for r in run_stdout(ostree(repo).arg("refs")).unwrap().lines() {
        let c = run_stdout(ostree(repo).args(["rev-parse", r]))
            .unwrap()
            .trim()
            .to_string();
        assert!(
            !repo.join(format!("state/{c}.commitpartial")).exists(),
            "ref {r} names the partial commit {c}"
        );
        run(ostree(repo).args(["ls", &c, "/"])).unwrap();
        refs.insert(r.to_string(), c);
    }
    refs
}

/// `tmp/staging-*` entries of a repo (directories and their `-lock` files).
fn staging_entries(repo: &Path) -> Vec<String> {
    names_with_prefix(&repo.join("tmp"), "staging-")
}

fn names_with_prefix(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Objects staged in a repo's staging directories: `xx/rest.kind` ─▶ inode.
fn staged_objects(repo: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for s in staging_entries(repo) {
        let Ok(subdirs) = std::fs::read_dir(repo.join("tmp").join(&s)) else {
            continue;
        };
        for sub in subdirs.flatten() {
            let Ok(files) = std::fs::read_dir(sub.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                // Detached metadata is not content-addressed: a pull rewrites it on purpose (it
                // adds the image's manifest and config), so it is no measure of reuse.
                if name.starts_with('.') || name.ends_with(".commitmeta") {
                    continue;
                }
                if let Ok(m) = f.metadata() {
                    let rel = format!("{}/{name}", sub.file_name().to_string_lossy());
                    out.insert(rel, m.ino());
                }
            }
        }
    }
    out
}

/// Of objects staged before a kill: how many are now in `objects/` with the same inode (moved
/// there by the rerun's commit, not rewritten), and how many were written again.
fn reuse(repo: &Path, staged: &BTreeMap<String, u64>) -> (usize, usize) {
    let (mut kept, mut rewritten) = (0, 0);
    for (rel, ino) in staged {
        match std::fs::metadata(repo.join("objects").join(rel)) {
            Ok(m) if m.ino() == *ino => kept += 1,
            Ok(_) => rewritten += 1,
            Err(_) => {}
        }
    }
    (kept, rewritten)
}

/// A process's live descendants (children of every thread, recursively).
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
                out.push(k);
                todo.push(k);
            }
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Kill {
    /// The run finished before the kill was due, after this long.
    Finished(Duration),
    /// Killed before the wrapper had exec'd `ostree-container`.
    Early,
    /// Killed while `ostree-container` ran; `orphans` of its children outlived it.
    Landed { orphans: usize },
}

/// Run `cmd`, SIGKILL it when `due` says so (polled every 5 ms, given the elapsed time), then
/// wait for the children it left (an export's `skopeo copy` runs on by itself) to exit.
fn kill_when(cmd: &mut Command, mut due: impl FnMut(Duration) -> bool) -> Kill {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !due(t0.elapsed()) {
        if child.try_wait().unwrap().is_some() {
            return Kill::Finished(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if child.try_wait().unwrap().is_some() {
        return Kill::Finished(t0.elapsed());
    }
    // ns.sh execs unshare, which execs sh, which execs the tool: one pid throughout.
    let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap_or_default();
    let kids = descendants(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    let landed = exe.file_name().is_some_and(|n| n == "ostree-container");
    let orphans: Vec<u32> = kids.into_iter().filter(|&k| alive(k)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while orphans.iter().any(|&k| alive(k)) {
        assert!(
            Instant::now() < deadline,
            "children {orphans:?} of a killed run still alive after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    if landed {
        Kill::Landed {
            orphans: orphans.len(),
        }
    } else {
        Kill::Early
    }
}

/// Kill attempts until `kills_per_op()` landed (at most three times as many attempts, plus
/// three); `attempt(i, delay)` runs one, checks it, and says how it ended. The delays are
/// spread over `span`, the duration of an uninterrupted run, shortened to that of any attempt
/// that finished first (the first run, on a busy machine, may be the slowest). Fails when too
/// few kills landed.
fn kill_loop(name: &str, span: Duration, mut attempt: impl FnMut(usize, Duration) -> Kill) {
    let want = kills_per_op();
    let mut rng = Rng::new(name);
    let mut span_ms = span.as_millis() as u64;
    let (mut landed, mut finished, mut early, mut orphaned) = (0, 0, 0, 0);
    let mut i = 0;
    while landed < want && i < want * 3 + 3 {
        let delay = Duration::from_millis(rng.below(span_ms));
        match attempt(i, delay) {
            Kill::Landed { orphans } => {
                landed += 1;
                orphaned += usize::from(orphans > 0);
            }
            Kill::Finished(t) => {
                finished += 1;
                span_ms = span_ms.min(t.as_millis() as u64).max(50);
            }
            Kill::Early => early += 1,
        }
        i += 1;
    }
    eprintln!(
        "{name}: {landed} kills landed in {i} attempts over {span_ms} ms ({finished} runs finished first, {early} killed before exec, {orphaned} left a child running)"
    );
    assert!(
        landed >= want,
        "{name}: only {landed} of {want} kills landed"
    );
}

/// A source repo with `os_text(flavour)` under `os`.
fn source(env: &TestEnv, flavour: &str) -> (PathBuf, String) {
    env.repo_with(&format!("src-{flavour}"), "os", &os_text(flavour))
        .unwrap()
}

/// What `image pull` imports from `imgref` into a fresh repo at `repo`.
fn pull_commit(env: &TestEnv, repo: &Path, imgref: &str) -> String {
    init_repo(repo);
    let out = run_stdout(
        env.ostree_container()
            .args(["image", "pull", "--json"])
            .arg(repo)
            .arg(imgref),
    )
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    let c = v["merged_commit"].as_str().unwrap().to_string();
    assert_repo_sound(repo);
    std::fs::remove_dir_all(repo).ok();
    c
}
