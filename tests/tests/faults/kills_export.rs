//! Exports killed at random points.

use super::*;

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
pub(super) fn layout_blobs(dir: &Path, tag: &str) -> BTreeSet<String> {
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
