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
                if name.starts_with('.') {
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

// ─── imports killed ─────────────────────────────────────────────────────────────────────────

/// Kill an import (`argv(repo)` into a fresh repo per attempt) at random points. The first
/// attempt is killed once a few objects are staged, so the rerun's reuse is always measured.
fn import_kills(env: &TestEnv, name: &str, argv: &dyn Fn(&Path) -> Command, want: &str) {
    // Uninterrupted, timed: the span the kills are spread over, and the expected result.
    let probe = env.path().join("probe");
    init_repo(&probe);
    let t0 = Instant::now();
    run(&mut argv(&probe)).unwrap();
    let span = t0.elapsed();
    let refs = assert_repo_sound(&probe);
    assert!(refs.values().any(|c| c == want), "{name}: {refs:?}");
    let want_refs = refs;
    std::fs::remove_dir_all(&probe).unwrap();

    let (mut staged_total, mut kept_total, mut lost_cache) = (0, 0, 0);
    kill_loop(name, span, |i, delay| {
        let repo = env.path().join(format!("r{i}"));
        init_repo(&repo);
        let k = if i == 0 {
            kill_when(&mut argv(&repo), |_| staged_objects(&repo).len() >= 20)
        } else {
            kill_when(&mut argv(&repo), |t| t >= delay)
        };
        let refs = assert_repo_sound(&repo);
        assert!(
            refs.is_empty() || refs == want_refs,
            "{name}: refs after a kill: {refs:?}"
        );
        let staged = staged_objects(&repo);
        // The rerun: succeeds, the expected refs, nothing staged or partial left. A kill inside
        // libostree's commit (objects renamed into objects/, refs not yet written) leaves the
        // commit complete without refs; the rerun then finds the base present, reads no layer
        // and sets only the image ref: the layer cache misses that image's chunk refs.
        let out = run_stdout(&mut argv(&repo)).unwrap();
        let got = assert_repo_sound(&repo);
        for (r, c) in &got {
            assert_eq!(
                want_refs.get(r),
                Some(c),
                "{name}: ref {r} after the rerun: {out}"
            );
        }
        let lost: Vec<&String> = want_refs.keys().filter(|r| !got.contains_key(*r)).collect();
        assert!(
            lost.iter().all(|r| r.starts_with("ostree/container/blob/")),
            "{name}: the rerun did not set {lost:?}"
        );
        if !lost.is_empty() {
            eprintln!("{name}: attempt {i}: the kill landed after the objects were committed and before the refs; the rerun left {} layer-cache refs unset", lost.len());
            lost_cache += 1;
        }
        assert!(
            staging_entries(&repo).is_empty(),
            "{name}: {:?}",
            staging_entries(&repo)
        );
        assert!(
            names_with_prefix(&repo.join("state"), "").is_empty(),
            "{name}: state/ after the rerun: {:?}",
            names_with_prefix(&repo.join("state"), "")
        );
        let (kept, rewritten) = reuse(&repo, &staged);
        assert_eq!(rewritten, 0, "{name}: staged objects written again");
        assert_eq!(
            kept,
            staged.len(),
            "{name}: every staged object is committed"
        );
        if i == 0 && matches!(k, Kill::Landed { .. }) {
            assert!(kept >= 20, "{name}: {kept} staged objects reused");
        }
        staged_total += staged.len();
        kept_total += kept;
        // Imports from oci: and containers-storage stage nothing in TMPDIR.
        let tmp = names_with_prefix(&env.podman.tmp, "ostree-container");
        assert!(tmp.is_empty(), "{name}: TMPDIR holds {tmp:?}");
        std::fs::remove_dir_all(&repo).unwrap();
        k
    });
    eprintln!("{name}: {staged_total} objects staged by killed runs, {kept_total} of them committed by the reruns without being written again; {lost_cache} reruns left layer-cache refs unset");
}

#[test]
fn killed_pulls_from_oci_leave_a_sound_repo_and_the_rerun_reuses_staged_objects() {
    let env = TestEnv::new();
    let (src, csum) = source(&env, "pull-oci");
    let oci = env.path().join("oci");
    let imgref = format!("oci:{}:1", oci.display());
    env.encapsulate(&src, "os", &imgref, &[]).unwrap();
    let argv = |repo: &Path| {
        let mut c = env.ostree_container();
        c.args(["image", "pull", "--json"]).arg(repo).arg(&imgref);
        c
    };
    import_kills(&env, "pull from oci", &argv, &csum);
}

#[test]
fn killed_pulls_from_containers_storage_leave_a_sound_repo() {
    let env = TestEnv::new();
    let (src, csum) = source(&env, "pull-cstor");
    let imgref = env.cstor_ref("localhost/faults:1");
    env.encapsulate(&src, "os", &imgref, &[]).unwrap();
    let argv = |repo: &Path| {
        let mut c = env.ostree_container();
        c.args(["image", "pull", "--json"]).arg(repo).arg(&imgref);
        c
    };
    import_kills(&env, "pull from containers-storage", &argv, &csum);
}

#[test]
fn killed_unencapsulates_leave_a_sound_repo_and_the_rerun_reuses_staged_objects() {
    let env = TestEnv::new();
    let (src, csum) = source(&env, "unencap");
    let oci = env.path().join("oci");
    let imgref = format!("oci:{}:1", oci.display());
    env.encapsulate(&src, "os", &imgref, &[]).unwrap();
    let argv = |repo: &Path| {
        let mut c = env.ostree_container();
        c.args([
            "unencapsulate",
            "--json",
            "--write-ref",
            "faults/os",
            "--repo",
        ])
        .arg(repo)
        .arg(&imgref);
        c
    };
    import_kills(&env, "unencapsulate", &argv, &csum);

    // What libostree's reuse looks like from the importer's side: objects the killed run had
    // staged count as present in the rerun's report.
    let repo = env.path().join("reuse");
    init_repo(&repo);
    let staged_files = |repo: &Path| {
        staged_objects(repo)
            .keys()
            .filter(|k| k.ends_with(".file"))
            .count()
    };
    let k = kill_when(&mut argv(&repo), |_| staged_files(&repo) >= 5);
    assert!(matches!(k, Kill::Landed { .. }), "{k:?}");
    let staged = staged_files(&repo);
    let report: Value = serde_json::from_str(&run_stdout(&mut argv(&repo)).unwrap()).unwrap();
    assert_eq!(report["commit"], csum.as_str());
    let present: u64 = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["content_present"].as_u64().unwrap())
        .sum();
    eprintln!("unencapsulate: {staged} content objects staged before the kill, {present} reported present by the rerun");
    assert!(
        present as usize >= staged && staged > 0,
        "{staged} staged, {present} present"
    );
}

// ─── exports killed ─────────────────────────────────────────────────────────────────────────

/// Temporary names a killed export may leave: `.ostree-container-*` beside an `oci:`
/// destination, `ostree-container-*` in TMPDIR.
fn export_temps(env: &TestEnv) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = names_with_prefix(env.path(), ".ostree-container-")
        .into_iter()
        .collect();
    for n in names_with_prefix(&env.podman.tmp, "ostree-container") {
        s.insert(format!("TMPDIR/{n}"));
    }
    s
}

/// After the rerun that follows kill attempt `i`: no temp dir at all (the rerun swept what the
/// killed run left, whose locks are free, and removed its own). `before`/`left`: the temp
/// names before the attempt and after the kill.
fn rerun_left_no_temps(
    env: &TestEnv,
    i: usize,
    before: &BTreeSet<String>,
    left: &BTreeSet<String>,
) {
    let after = export_temps(env);
    assert!(
        after.is_empty(),
        "attempt {i}: after the rerun: {after:?} (the killed run had left {left:?})"
    );
    if !left.is_subset(before) {
        eprintln!(
            "attempt {i}: the killed run left {:?}",
            left.difference(before).collect::<Vec<_>>()
        );
    }
}

/// Encapsulate: the manifest digest and how long it took.
fn timed_encapsulate(env: &TestEnv, src: &Path, dest: &str, extra: &[&str]) -> (String, Duration) {
    let t0 = Instant::now();
    let d = env.encapsulate(src, "os", dest, extra).unwrap();
    (d, t0.elapsed())
}

fn encapsulate_cmd(env: &TestEnv, src: &Path, dest: &str) -> Command {
    let mut c = env.ostree_container();
    c.args(["encapsulate", "-q", "--repo"])
        .arg(src)
        .arg("os")
        .arg(dest);
    c
}

/// Every blob of the image under `tag` is present and matches its digest; the digests.
fn layout_blobs(dir: &Path, tag: &str) -> BTreeSet<String> {
    let l = Layout::open(dir);
    let m = l
        .manifest(Some(tag))
        .unwrap_or_else(|e| panic!("{} {tag}: {e:#}", dir.display()));
    let cfg = l.config(&m).unwrap();
    let mut s = BTreeSet::from([
        l.manifest_digest(Some(tag)).unwrap(),
        m["config"]["digest"].as_str().unwrap().to_string(),
    ]);
    for (layer, diff_id) in m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(cfg["rootfs"]["diff_ids"].as_array().unwrap())
    {
        l.layer_tar(layer, diff_id.as_str()).unwrap();
        s.insert(layer["digest"].as_str().unwrap().to_string());
    }
    s
}

#[test]
fn killed_exports_to_a_new_oci_dir_publish_nothing_or_a_complete_image() {
    let env = TestEnv::new();
    let (src, csum) = source(&env, "oci-new");
    let out = env.path().join("out");
    let dest = format!("oci:{}:1", out.display());
    let (want, span) = timed_encapsulate(&env, &src, &dest, &[]);
    let mut appeared = 0;
    kill_loop("encapsulate to a new oci: dir", span, |i, delay| {
        std::fs::remove_dir_all(&out).unwrap();
        let before = export_temps(&env);
        let k = kill_when(&mut encapsulate_cmd(&env, &src, &dest), |t| t >= delay);
        if out.exists() {
            // Published: then complete, and (after a kill) it imports to the commit.
            layout_blobs(&out, "1");
            assert_eq!(Layout::open(&out).manifest_digest(Some("1")).unwrap(), want);
            if matches!(k, Kill::Landed { .. }) {
                assert_eq!(pull_commit(&env, &env.path().join("check"), &dest), csum);
                appeared += 1;
            }
        }
        let left = export_temps(&env);
        std::fs::remove_dir_all(&out).ok();
        assert_eq!(env.encapsulate(&src, "os", &dest, &[]).unwrap(), want);
        layout_blobs(&out, "1");
        rerun_left_no_temps(&env, i, &before, &left);
        k
    });
    eprintln!(
        "encapsulate to a new oci: dir: published by a killed run {appeared} times; temp dirs of killed runs left: {}",
        export_temps(&env).len()
    );
}

#[test]
fn killed_exports_to_an_existing_layout_keep_its_other_tag() {
    let env = TestEnv::new();
    let (src, csum) = source(&env, "oci-existing");
    let (other_src, other_csum) = env
        .repo_with("other", "os", "file usr/bin/other content=\"other\"\n")
        .unwrap();
    let base = env.path().join("base");
    env.encapsulate(
        &other_src,
        "os",
        &format!("oci:{}:other", base.display()),
        &[],
    )
    .unwrap();
    let base_index = std::fs::read(base.join("index.json")).unwrap();
    let ex = env.path().join("ex");
    let copy_base = || {
        std::fs::remove_dir_all(&ex).ok();
        run(Command::new("cp").arg("-a").arg(&base).arg(&ex)).unwrap();
    };
    copy_base();
    let dest = format!("oci:{}:new", ex.display());
    let (want, span) = timed_encapsulate(&env, &src, &dest, &[]);
    let all_blobs = |dir: &Path| -> BTreeSet<String> {
        names_with_prefix(&dir.join("blobs/sha256"), "")
            .into_iter()
            .collect()
    };
    let mut tagged = 0;
    let mut garbage_left = 0;
    kill_loop(
        "encapsulate to an existing oci: layout",
        span,
        |i, delay| {
            copy_base();
            let k = kill_when(&mut encapsulate_cmd(&env, &src, &dest), |t| t >= delay);
            // The other tag is always intact; index.json is the old one or names both tags.
            layout_blobs(&ex, "other");
            let index = std::fs::read(ex.join("index.json")).unwrap();
            if index != base_index {
                layout_blobs(&ex, "new");
                assert_eq!(
                    Layout::open(&ex).manifest_digest(Some("new")).unwrap(),
                    want
                );
                if matches!(k, Kill::Landed { .. }) {
                    assert_eq!(
                        pull_commit(&env, &env.path().join("check"), &dest),
                        csum,
                        "attempt {i}"
                    );
                    tagged += 1;
                }
            }
            let after_kill = all_blobs(&ex);
            assert_eq!(env.encapsulate(&src, "os", &dest, &[]).unwrap(), want);
            let mut used = layout_blobs(&ex, "other");
            used.extend(layout_blobs(&ex, "new"));
            let used: BTreeSet<String> = used
                .iter()
                .map(|d| d.trim_start_matches("sha256:").to_string())
                .collect();
            let garbage: BTreeSet<String> = all_blobs(&ex).difference(&used).cloned().collect();
            // Whatever is left over was the killed run's: the rerun adds nothing unused.
            assert!(
                garbage.is_subset(&after_kill),
                "attempt {i}: the rerun left {garbage:?}"
            );
            garbage_left += garbage.len();
            k
        },
    );
    // The other tag still imports to its commit.
    assert_eq!(
        pull_commit(
            &env,
            &env.path().join("check"),
            &format!("oci:{}:other", ex.display())
        ),
        other_csum
    );
    eprintln!("encapsulate to an existing layout: tagged by a killed run {tagged} times; unreferenced blob files left by killed runs: {garbage_left}");
}

#[test]
fn killed_exports_to_containers_storage_publish_nothing_or_a_complete_image() {
    let env = TestEnv::new();
    let (src, csum) = source(&env, "cstor");
    let dest = env.cstor_ref("localhost/faults:1");
    let (want, span) = timed_encapsulate(&env, &src, &dest, &[]);
    let remove = || {
        run(env
            .podman
            .podman()
            .args(["rmi", "-f", "localhost/faults:1"]))
        .unwrap();
    };
    let present = || {
        env.podman
            .skopeo()
            .args(["inspect", "--raw"])
            .arg(&dest)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    let mut appeared = 0;
    kill_loop("encapsulate to containers-storage", span, |i, delay| {
        remove();
        assert!(!present());
        let before = export_temps(&env);
        let k = kill_when(&mut encapsulate_cmd(&env, &src, &dest), |t| t >= delay);
        // Any `skopeo copy` the killed run had started has finished by now (kill_when waits).
        if present() && matches!(k, Kill::Landed { .. }) {
            assert_eq!(
                pull_commit(&env, &env.path().join("check"), &dest),
                csum,
                "attempt {i}"
            );
            appeared += 1;
        }
        let left = export_temps(&env);
        remove();
        assert_eq!(env.encapsulate(&src, "os", &dest, &[]).unwrap(), want);
        rerun_left_no_temps(&env, i, &before, &left);
        k
    });
    eprintln!(
        "encapsulate to containers-storage: the image appeared after a kill {appeared} times (its skopeo copy ran on); temp dirs of killed runs left: {}",
        export_temps(&env).len()
    );
}

// ─── a full disk ────────────────────────────────────────────────────────────────────────────

/// A tmpfs of `size` at `dir` (needs root), unmounted on drop.
struct Tmpfs(PathBuf);
impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir))
        .expect("mounting a tmpfs (needs root)");
        Tmpfs(dir)
    }
    /// Bytes available.
    fn free(&self) -> u64 {
        let out = run_stdout(
            Command::new("stat")
                .args(["-f", "-c", "%a %S"])
                .arg(&self.0),
        )
        .unwrap();
        let v: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
        v[0] * v[1]
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        Command::new("umount").arg("-l").arg(&self.0).status().ok();
    }
}

/// Three 6 MB components: 18 MB of content, in layers that compress to almost nothing.
fn big_text() -> String {
    let mut t = String::from("subject big\n");
    for i in 0..3 {
        t.push_str(&format!(
            "file usr/share/big/f{i} size={} xattr.user.component=b{i}\n",
            6_000_000 + i
        ));
    }
    t
}

#[test]
fn a_pull_that_fills_the_disk_names_the_layer_and_gives_the_space_back() {
    let env = TestEnv::new();
    let (src, csum) = env.repo_with("big", "os", &big_text()).unwrap();
    let oci = env.path().join("oci");
    let imgref = format!("oci:{}:1", oci.display());
    env.encapsulate(&src, "os", &imgref, &[]).unwrap();
    let fs = Tmpfs::mount(env.path().join("small"), "8m");
    let repo = fs.0.join("repo");
    init_repo(&repo);
    let free = fs.free();
    let o = env
        .ostree_container()
        .args(["image", "pull"])
        .arg(&repo)
        .arg(&imgref)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "an 18 MB image fit in 8 MiB");
    eprintln!("pull on a full disk: {}", e.trim());
    let digests: Vec<String> = Layout::open(&oci).manifest(Some("1")).unwrap()["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert!(
        digests
            .iter()
            .enumerate()
            .any(|(i, d)| e.contains(&format!("layer {i} ({d})"))),
        "the error names the layer: {e}"
    );
    assert!(e.contains("No space left on device"), "{e}");
    assert!(assert_repo_sound(&repo).is_empty());
    assert!(staging_entries(&repo).is_empty());
    assert!(names_with_prefix(&repo.join("state"), "").is_empty());
    let after = fs.free();
    assert!(
        after + (64 << 10) >= free,
        "free space before {free}, after {after}"
    );
    // With room, the same pull works.
    assert_eq!(pull_commit(&env, &env.path().join("roomy"), &imgref), csum);
}

#[test]
fn an_export_that_fills_the_disk_publishes_nothing_and_gives_the_space_back() {
    let env = TestEnv::new();
    let (src, _) = env.repo_with("big", "os", &big_text()).unwrap();
    let fs = Tmpfs::mount(env.path().join("small"), "8m");
    let free = fs.free();
    // A new layout: nothing under its name, nothing beside it.
    let out = fs.0.join("out");
    let o = env
        .ostree_container()
        .args(["encapsulate", "-q", "--compression", "none", "--repo"])
        .arg(&src)
        .arg("os")
        .arg(format!("oci:{}:1", out.display()))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    eprintln!("export on a full disk: {}", e.trim());
    assert!(
        e.contains("writing layer") && e.contains("No space left on device"),
        "{e}"
    );
    assert!(!out.exists());
    assert!(
        names_with_prefix(&fs.0, "").is_empty(),
        "{:?}",
        names_with_prefix(&fs.0, "")
    );
    assert!(fs.free() + (64 << 10) >= free, "{free} {}", fs.free());

    // An existing layout: index.json and the blobs as they were.
    let ex = fs.0.join("ex");
    env.encapsulate(&src, "os", &format!("oci:{}:a", ex.display()), &[])
        .unwrap();
    let index = std::fs::read(ex.join("index.json")).unwrap();
    let blobs = names_with_prefix(&ex.join("blobs/sha256"), "");
    let free = fs.free();
    let o = env
        .ostree_container()
        .args(["encapsulate", "-q", "--compression", "none", "--repo"])
        .arg(&src)
        .arg("os")
        .arg(format!("oci:{}:b", ex.display()))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(e.contains("No space left on device"), "{e}");
    assert_eq!(std::fs::read(ex.join("index.json")).unwrap(), index);
    assert_eq!(names_with_prefix(&ex.join("blobs/sha256"), ""), blobs);
    assert_eq!(
        names_with_prefix(&ex, ""),
        ["blobs", "index.json", "oci-layout"]
    );
    layout_blobs(&ex, "a");
    assert!(fs.free() + (64 << 10) >= free, "{free} {}", fs.free());
}

// ─── a source that stalls ───────────────────────────────────────────────────────────────────

/// A TCP proxy in front of `upstream` that forwards everything, except that once a request
/// naming `needle` has gone upstream it forwards only `budget` bytes of the answer and then
/// holds the connection open, sending nothing. Every thread stops when the proxy is dropped
/// or after two minutes.
struct StallProxy {
    addr: String,
    stop: Arc<AtomicBool>,
    stalled: Arc<AtomicUsize>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl StallProxy {
    fn start(upstream: &str, needle: &str, budget: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(120);
        let (up, needle) = (upstream.to_string(), needle.as_bytes().to_vec());
        let (st, sd) = (stop.clone(), stalled.clone());
        let accept = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (up, needle, st, sd) =
                            (up.clone(), needle.clone(), st.clone(), sd.clone());
                        conns.push(std::thread::spawn(move || {
                            relay(client, &up, &needle, budget, &st, &sd, deadline)
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            st.store(true, Ordering::SeqCst);
            for c in conns {
                c.join().ok();
            }
        });
        StallProxy {
            addr,
            stop,
            stalled,
            accept: Some(accept),
        }
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.accept.take() {
            a.join().ok();
        }
    }
}

/// One connection: client ─▶ upstream in a scoped helper thread, upstream ─▶ client here.
fn relay(
    client: TcpStream,
    upstream: &str,
    needle: &[u8],
    budget: usize,
    stop: &AtomicBool,
    stalled: &AtomicUsize,
    deadline: Instant,
) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let tick = Some(Duration::from_millis(100));
    for s in [&client, &server] {
        s.set_read_timeout(tick).ok();
        s.set_nodelay(true).ok();
    }
    let live = || !stop.load(Ordering::SeqCst) && Instant::now() < deadline;
    let stall = AtomicBool::new(false);
    std::thread::scope(|sc| {
        // Requests: forwarded as they come; one naming the needle arms the stall first.
        sc.spawn(|| {
            let (mut from, mut to) = (&client, &server);
            let mut buf = vec![0u8; 16 << 10];
            let mut tail: Vec<u8> = Vec::new();
            while live() {
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        tail.extend_from_slice(&buf[..n]);
                        if tail.windows(needle.len()).any(|w| w == needle) {
                            stall.store(true, Ordering::SeqCst);
                        }
                        let keep = tail.len().saturating_sub(needle.len());
                        tail.drain(..keep);
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if is_timeout(&e) => {}
                    Err(_) => break,
                }
            }
            server.shutdown(std::net::Shutdown::Write).ok();
        });
        // Answers: forwarded, but only `budget` bytes once the stall is armed.
        let (mut from, mut to) = (&server, &client);
        let mut buf = vec![0u8; 16 << 10];
        let mut left = budget;
        while live() {
            let armed = stall.load(Ordering::SeqCst);
            if armed && left == 0 {
                // Hold the connection, read nothing, send nothing.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            let cap = if armed {
                left.min(buf.len())
            } else {
                buf.len()
            };
            match from.read(&mut buf[..cap]) {
                Ok(0) => break,
                Ok(n) => {
                    if armed {
                        left -= n;
                        if left == 0 {
                            stalled.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e) if is_timeout(&e) => {}
                Err(_) => break,
            }
        }
        client.shutdown(std::net::Shutdown::Both).ok();
        server.shutdown(std::net::Shutdown::Both).ok();
    });
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Four components of 300 kB of incompressible bytes (the registry gets gzip layers whatever
/// we push), written under `dir`.
fn noise_text(dir: &Path) -> String {
    let mut t = String::from("subject noise\n");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..4 {
        let p = dir.join(format!("noise{i}"));
        let data: Vec<u8> = (0..300_000).map(|_| rng.below(256) as u8).collect();
        std::fs::write(&p, data).unwrap();
        t.push_str(&format!(
            "file usr/share/n{i}/data from={} xattr.user.component=n{i}\n",
            p.display()
        ));
    }
    t
}

#[test]
fn a_stalled_registry_fails_the_pull_within_the_idle_timeout() {
    let env = TestEnv::new();
    let (src, csum) = env
        .repo_with("noise", "os", &noise_text(env.path()))
        .unwrap();
    let reg = Registry::start(&env.path().join("registry")).unwrap();
    let at_registry = format!("docker://{}/faults/os:1", reg.addr);
    env.encapsulate(&src, "os", &at_registry, &["--dest-tls-verify=false"])
        .unwrap();
    // The largest layer as the registry holds it: the one to stall, 64 KiB into its answer.
    let manifest: Value = serde_json::from_str(
        &run_stdout(
            env.podman
                .skopeo()
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(&at_registry),
        )
        .unwrap(),
    )
    .unwrap();
    let (index, layer) = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .max_by_key(|(_, l)| l["size"].as_u64().unwrap())
        .unwrap();
    let digest = layer["digest"].as_str().unwrap().to_string();
    assert!(layer["size"].as_u64().unwrap() > 200_000, "{layer}");
    let proxy = StallProxy::start(&reg.addr, &format!("/blobs/{digest}"), 64 << 10);

    let repo = env.path().join("repo");
    init_repo(&repo);
    let t0 = Instant::now();
    let o = env
        .ostree_container()
        .args([
            "image",
            "pull",
            "--idle-timeout",
            "3",
            "--src-tls-verify=false",
        ])
        .arg(&repo)
        .arg(format!("docker://{}/faults/os:1", proxy.addr))
        .output()
        .unwrap();
    let took = t0.elapsed();
    let e = String::from_utf8_lossy(&o.stderr);
    eprintln!("stalled pull: failed after {took:?}: {}", e.trim());
    assert!(!o.status.success(), "the pull went through a stalled blob");
    assert!(
        proxy.stalled.load(Ordering::SeqCst) >= 1,
        "the proxy never stalled"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(took >= Duration::from_secs(3), "{took:?}");
    assert!(
        e.contains("no progress") && e.contains("within 3s"),
        "the error says it stalled: {e}"
    );
    assert!(e.contains(&format!("layer {index} ({digest})")), "{e}");
    assert!(assert_repo_sound(&repo).is_empty());
    assert!(staging_entries(&repo).is_empty());
    assert!(names_with_prefix(&repo.join("state"), "").is_empty());
    drop(proxy);

    // Straight from the registry, the same pull goes through.
    let out = run_stdout(
        env.ostree_container()
            .args(["image", "pull", "--json", "--src-tls-verify=false"])
            .arg(&repo)
            .arg(&at_registry),
    )
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["merged_commit"], csum.as_str());
    assert_repo_sound(&repo);
}
