//! The layer cache: an update fetches only the layers that changed, a re-pull fetches nothing,
//! a derived image over a present base fetches only its own layers (also in a second build
//! generation), and `prune-layers` removes exactly what no image or deployment needs.

use ostree_bridge_tests::oci::Layout;
use ostree_bridge_tests::{new_sysroot, run, run_stdout, TestEnv, SAMPLE};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Indices of the layers the pull read.
fn fetched(r: &Value) -> BTreeSet<u64> {
    r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["action"] == "fetched")
        .map(|l| l["index"].as_u64().unwrap())
        .collect()
}

fn fsck(repo: &Path) {
    run(Command::new("ostree")
        .arg("fsck")
        .arg(format!("--repo={}", repo.display())))
    .unwrap();
}

fn blob_refs(repo: &Path) -> BTreeSet<String> {
    run_stdout(
        Command::new("ostree")
            .arg("refs")
            .arg(format!("--repo={}", repo.display())),
    )
    .unwrap()
    .lines()
    .filter(|l| l.starts_with("ostree/container/blob/"))
    .map(str::to_string)
    .collect()
}

fn prune_layers(env: &TestEnv, repo: &Path, extra: &[&str]) -> Value {
    let out = run_stdout(
        env.ostree_container()
            .args(["image", "prune-layers", "--json", "--repo"])
            .arg(repo)
            .args(extra),
    )
    .unwrap();
    serde_json::from_str(&out).unwrap()
}

/// Six components of distinct sizes; `edit` changes the content of component c3.
fn os_text(version: &str, edit: &str) -> String {
    let mut t = format!("subject \"os {version}\"\nmeta version={version}\n");
    for i in 0..6 {
        t.push_str(&format!(
            "file usr/share/c{i}/data size={} xattr.user.component=c{i}\n",
            20_000 * (i + 1)
        ));
    }
    t.push_str(&format!(
        "file usr/share/c3/conf content=\"{edit}\" xattr.user.component=c3\n"
    ));
    t
}

#[test]
fn an_update_fetches_only_the_layers_that_changed() {
    let env = TestEnv::new();
    let (r1, c1) = env.repo_with("v1", "os", &os_text("1", "one")).unwrap();
    let (r2, c2) = env.repo_with("v2", "os", &os_text("2", "two")).unwrap();
    let img = env.path().join("img");
    let tag = |t: &str| format!("oci:{}:{t}", img.display());
    env.encapsulate(&r1, "os", &tag("1"), &["--max-layers", "8"])
        .unwrap();
    env.encapsulate(
        &r2,
        "os",
        &tag("2"),
        &["--max-layers", "8", "--prior-build", &tag("1")],
    )
    .unwrap();
    let repo = env.new_repo("dst");
    let p1 = env.pull_json(&repo, &tag("1"));
    assert_eq!(p1["merged_commit"], c1.as_str());
    let n = p1["layers"].as_array().unwrap().len() as u64;
    assert_eq!(fetched(&p1), (0..n).collect(), "a fresh repo reads all");

    // v2: the commit layer is new, and so is the chunk holding c3; nothing else is read.
    let manifest = Layout::open(&img).manifest(Some("2")).unwrap();
    let mut want = BTreeSet::from([0u64]);
    for (i, l) in manifest["layers"].as_array().unwrap().iter().enumerate() {
        let comps = l["annotations"]["ostree.components"].as_str().unwrap_or("");
        if comps.split(',').any(|c| c == "c3") {
            want.insert(i as u64);
        }
    }
    assert_eq!(want.len(), 2, "c3 is in one chunk: {manifest}");
    let p2 = env.pull_json(&repo, &tag("2"));
    assert_eq!(p2["merged_commit"], c2.as_str());
    assert_eq!(fetched(&p2), want, "{p2}");
    let total: u64 = p2["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    assert!(p2["bytes_to_fetch"].as_u64().unwrap() < total / 2, "{p2}");
    fsck(&repo);

    // Same image again: nothing to read.
    let again = env.pull_json(&repo, &tag("2"));
    assert!(fetched(&again).is_empty(), "{again}");
    assert_eq!(again["bytes_to_fetch"], 0);

    // Without v1's image ref, its own layers (commit layer, old c3 chunk) are not needed.
    let before = blob_refs(&repo);
    run(env
        .ostree_container()
        .args(["image", "remove", "--repo"])
        .arg(&repo)
        .arg(tag("1")))
    .unwrap();
    let dry = prune_layers(&env, &repo, &["--dry-run"]);
    // Each layer has two refs: its diff_id and (gzip) its blob digest.
    let layout = Layout::open(&img);
    let m1 = layout.manifest(Some("1")).unwrap();
    let cfg1 = layout.config(&m1).unwrap();
    let v2_digests = manifest.to_string();
    let mut only_v1 = BTreeSet::new();
    for (l, d) in m1["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(cfg1["rootfs"]["diff_ids"].as_array().unwrap())
    {
        let digest = l["digest"].as_str().unwrap();
        if !v2_digests.contains(digest) {
            for x in [digest, d.as_str().unwrap()] {
                only_v1.insert(format!("ostree/container/blob/{}", x.replace(':', "_3A_")));
            }
        }
    }
    assert_eq!(only_v1.len(), 4);
    let removed: BTreeSet<String> = dry["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    assert_eq!(removed, only_v1, "{dry}");
    assert_eq!(blob_refs(&repo), before, "a dry run removes nothing");
    let done = prune_layers(&env, &repo, &["--prune-objects"]);
    assert_eq!(done["removed"], dry["removed"]);
    assert!(done["objects_freed"].as_u64().unwrap() > 0, "{done}");
    fsck(&repo);
    // v2 is untouched; v1 now reads exactly the two layers that went.
    assert!(fetched(&env.pull_json(&repo, &tag("2"))).is_empty());
    let p1b = env.pull_json(&repo, &tag("1"));
    assert_eq!(p1b["merged_commit"], c1.as_str());
    assert_eq!(fetched(&p1b).len(), 2, "{p1b}");
    fsck(&repo);
}

#[test]
fn derived_images_fetch_only_their_own_layers_across_generations() {
    let env = TestEnv::new();
    let (src, base) = env.repo_with("src", "sample", SAMPLE).unwrap();
    env.encapsulate(&src, "sample", &env.cstor_ref("localhost/base:1"), &[])
        .unwrap();
    env.podman_build(
        "localhost/d1:1",
        "FROM localhost/base:1\nRUN echo one > /usr/share/one && rm /usr/bin/su-like\n",
    )
    .unwrap();
    env.podman_build(
        "localhost/d2:1",
        "FROM localhost/d1:1\nRUN echo two > /usr/share/two && rm /usr/share/one\n",
    )
    .unwrap();
    let repo = env.new_repo("dst");
    let d1 = env.cstor_ref("localhost/d1:1");
    let d2 = env.cstor_ref("localhost/d2:1");
    let p1 = env.pull_json(&repo, &d1);
    assert_eq!(p1["base_commit"], base.as_str());
    let n = p1["layers"].as_array().unwrap().len() as u64;
    assert_eq!(fetched(&p1), (0..n).collect());
    // Again: nothing read, the same merged commit.
    let again = env.pull_json(&repo, &d1);
    assert!(fetched(&again).is_empty(), "{again}");
    assert_eq!(again["merged_commit"], p1["merged_commit"]);
    // The second generation reads its one new layer only, streamed by skopeo's proxy.
    let p2 = env.pull_json(&repo, &d2);
    assert_eq!(fetched(&p2), BTreeSet::from([n]), "{p2}");
    assert_eq!(p2["read_via"], "image-proxy");
    let merged = p2["merged_commit"].as_str().unwrap();
    let ls = |path: &str| {
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["ls", merged, path])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(ls("/usr/share/two"));
    assert!(
        !ls("/usr/share/one"),
        "the whiteout of a lower derived layer"
    );
    assert!(!ls("/usr/bin/su-like"), "the first generation's whiteout");
    assert!(ls("/usr/bin/hello"));
    fsck(&repo);
}

#[test]
fn prune_layers_keeps_what_a_deployment_uses() {
    let env = TestEnv::new();
    let (src, _) = env.repo_with("src", "sample", SAMPLE).unwrap();
    env.encapsulate(&src, "sample", &env.cstor_ref("localhost/base:1"), &[])
        .unwrap();
    env.podman_build(
        "localhost/os:1",
        "FROM localhost/base:1\nRUN echo x > /usr/share/x\n",
    )
    .unwrap();
    let sysroot = new_sysroot(env.path(), "sysroot", "myos").unwrap();
    run(env
        .ostree_container()
        .args(["image", "deploy", "--stateroot", "myos", "--sysroot"])
        .arg(&sysroot)
        .args(["--imgref", &env.cstor_ref("localhost/os:1")]))
    .unwrap();
    let repo = sysroot.join("ostree/repo");
    let refs = blob_refs(&repo);
    assert!(!refs.is_empty());
    // The image ref goes; the deployment still names the image's layers.
    let image_refs: Vec<String> = run_stdout(
        Command::new("ostree")
            .arg("refs")
            .arg(format!("--repo={}", repo.display())),
    )
    .unwrap()
    .lines()
    .filter(|l| l.starts_with("ostree/container/image/"))
    .map(str::to_string)
    .collect();
    assert_eq!(image_refs.len(), 1);
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["refs", "--delete", &image_refs[0]]))
    .unwrap();
    let r = prune_layers(&env, &repo, &[]);
    assert!(r["removed"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(blob_refs(&repo), refs);
}

/// An image copied into containers-storage from a gzip layout: the store no longer holds the
/// blobs the manifest names, so its layers are read by diff_id; an update still reads only
/// what changed.
#[test]
fn containers_storage_from_gzip_reads_layers_by_diff_id() {
    let env = TestEnv::new();
    let (r1, c1) = env.repo_with("v1", "os", &os_text("1", "one")).unwrap();
    let (r2, c2) = env.repo_with("v2", "os", &os_text("2", "two")).unwrap();
    let img = env.path().join("img");
    let tag = |t: &str| format!("oci:{}:{t}", img.display());
    env.encapsulate(&r1, "os", &tag("1"), &["--max-layers", "6"])
        .unwrap();
    env.encapsulate(
        &r2,
        "os",
        &tag("2"),
        &["--max-layers", "6", "--prior-build", &tag("1")],
    )
    .unwrap();
    for t in ["1", "2"] {
        run(env
            .podman
            .skopeo()
            .args(["copy", "--quiet", &tag(t)])
            .arg(env.cstor_ref(&format!("localhost/gz:{t}"))))
        .unwrap();
    }
    let repo = env.new_repo("dst");
    let p1 = env.pull_json(&repo, &env.cstor_ref("localhost/gz:1"));
    assert_eq!(p1["merged_commit"], c1.as_str());
    assert_eq!(p1["read_via"], "image-proxy", "{p1}");
    let p2 = env.pull_json(&repo, &env.cstor_ref("localhost/gz:2"));
    assert_eq!(p2["merged_commit"], c2.as_str());
    assert_eq!(fetched(&p2).len(), 2, "{p2}");
    fsck(&repo);
}
