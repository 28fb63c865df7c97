//! Imports killed at random points.

use super::*;

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
