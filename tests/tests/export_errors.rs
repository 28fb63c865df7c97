//! Bad input and failing destinations: one clear error, non-zero exit, and nothing left under
//! the destination name.

use ostree_bridge_tests::oci::Layout;
use ostree_bridge_tests::{run, run_stdout, TestEnv, SAMPLE};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Run an export that must fail; returns stderr.
fn fails(c: &mut Command) -> String {
    let out = c.output().expect("spawn");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        stderr.matches("error:").count(),
        1,
        "the error is printed once: {stderr}"
    );
    stderr
}

fn encapsulate(env: &TestEnv, repo: &Path, rev: &str, dest: &str) -> Command {
    let mut c = env.ostree_container();
    c.args(["encapsulate", "--repo"])
        .arg(repo)
        .arg(rev)
        .arg(dest);
    c
}

/// Entries of a directory, sorted (to show nothing was left behind).
fn listing(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn missing_repo_ref_and_non_commit() {
    let env = TestEnv::new();
    let (repo, csum) = env.repo_with("repo", "sample", SAMPLE).unwrap();
    let dest = env.path().join("out");
    let d = format!("oci:{}", dest.display());
    let e = fails(&mut encapsulate(
        &env,
        &env.path().join("nope"),
        "sample",
        &d,
    ));
    assert!(e.contains("not an ostree repository"), "{e}");
    let e = fails(&mut encapsulate(&env, &repo, "no/such/ref", &d));
    assert!(e.contains("no ref or commit \"no/such/ref\""), "{e}");
    // The root dirtree's checksum names an object, but not a commit.
    let tree = run_stdout(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["rev-parse", "sample"]),
    )
    .unwrap();
    assert_eq!(tree.trim(), csum);
    let dirtree = dirtree_of(&repo, &csum);
    let e = fails(&mut encapsulate(&env, &repo, &dirtree, &d));
    assert!(
        e.contains("not a commit") || e.contains("no ref or commit"),
        "{e}"
    );
    assert!(!dest.exists(), "nothing written for bad input");
}

/// The root dirtree checksum of a commit (`ostree ls -d -C`).
fn dirtree_of(repo: &Path, commit: &str) -> String {
    let out = run_stdout(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["ls", "-d", "-C", commit, "/"]),
    )
    .unwrap();
    // d00755 0 0 0 <dirtree> <dirmeta> /
    out.split_whitespace().nth(4).unwrap().to_string()
}

#[test]
fn bad_references_and_options() {
    let env = TestEnv::new();
    let (repo, _) = env.repo_with("repo", "sample", SAMPLE).unwrap();
    let e = fails(&mut encapsulate(&env, &repo, "sample", "nope:/x"));
    assert!(e.contains("unknown transport"), "{e}");
    let e = fails(&mut encapsulate(&env, &repo, "sample", "docker:quay.io/x"));
    assert!(e.contains("docker://"), "{e}");
    let dest = env.path().join("out");
    let e = fails(
        encapsulate(&env, &repo, "sample", &format!("oci:{}", dest.display()))
            .args(["--copymeta", "absent"]),
    );
    assert!(e.contains("absent"), "{e}");
    let e = fails(
        encapsulate(&env, &repo, "sample", &format!("oci:{}", dest.display()))
            .args(["--compression", "lz4"]),
    );
    assert!(e.contains("lz4"), "{e}");
    let e = fails(&mut encapsulate(
        &env,
        &repo,
        "sample",
        &format!("oci:{}/no/such/dir/out", env.path().display()),
    ));
    assert!(e.contains("does not exist"), "{e}");
    assert!(!dest.exists());
    assert_eq!(listing(env.path()), vec!["c", "repo"]);
}

#[test]
fn skopeo_missing_is_named() {
    let env = TestEnv::new();
    let (repo, _) = env.repo_with("repo", "sample", SAMPLE).unwrap();
    let mut c = encapsulate(&env, &repo, "sample", &env.cstor_ref("localhost/x:1"));
    c.env("PATH", "/nonexistent");
    let e = fails(&mut c);
    assert!(e.contains("skopeo is not installed"), "{e}");
}

#[test]
fn a_refusing_registry_is_reported() {
    let env = TestEnv::new();
    let (repo, _) = env.repo_with("repo", "sample", SAMPLE).unwrap();
    // Nothing listens on port 9 of loopback.
    let mut c = encapsulate(&env, &repo, "sample", "docker://127.0.0.1:9/x:1");
    c.arg("--dest-tls-verify=false");
    let e = fails(&mut c);
    assert!(e.contains("skopeo failed"), "{e}");
    assert!(e.contains("127.0.0.1:9"), "{e}");
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);
impl Tmpfs {
    fn new(p: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&p).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&p))
        .expect("mounting a tmpfs (the disk-full tests need root)");
        Tmpfs(p)
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        Command::new("umount").arg(&self.0).status().ok();
    }
}

#[test]
fn a_full_destination_leaves_nothing_behind() {
    let env = TestEnv::new();
    let (repo, _) = env.repo_with("repo", "sample", SAMPLE).unwrap();
    let fs = Tmpfs::new(env.path().join("small"), "256k");
    // A new oci dir: nothing at all remains.
    let dest = fs.0.join("out");
    let e = fails(&mut encapsulate(
        &env,
        &repo,
        "sample",
        &format!("oci:{}", dest.display()),
    ));
    assert!(e.contains("No space left on device"), "{e}");
    assert!(
        listing(&fs.0).is_empty(),
        "left behind: {:?}",
        listing(&fs.0)
    );
    // An archive: no half-written file under the name.
    let e = fails(&mut encapsulate(
        &env,
        &repo,
        "sample",
        &format!("oci-archive:{}/out.tar", fs.0.display()),
    ));
    assert!(
        e.contains("No space left") || e.contains("no space left"),
        "{e}"
    );
    assert!(
        listing(&fs.0).is_empty(),
        "left behind: {:?}",
        listing(&fs.0)
    );
}

#[test]
fn a_failed_export_into_an_existing_layout_keeps_it_intact() {
    let env = TestEnv::new();
    let small = "file usr/share/a content=\"a\\n\"\n";
    let (repo, _) = env.repo_with("repo", "small", small).unwrap();
    let fs = Tmpfs::new(env.path().join("small"), "512k");
    let dest = fs.0.join("out");
    let d1 = run_stdout(&mut encapsulate(
        &env,
        &repo,
        "small",
        &format!("oci:{}:v1", dest.display()),
    ))
    .unwrap();
    let before_blobs = listing(&dest.join("blobs/sha256"));
    let before_index = std::fs::read(dest.join("index.json")).unwrap();
    // The sample carries busybox (about 2 MB): it cannot fit.
    let (repo2, _) = env.repo_with("repo2", "sample", SAMPLE).unwrap();
    fails(&mut encapsulate(
        &env,
        &repo2,
        "sample",
        &format!("oci:{}:v2", dest.display()),
    ));
    assert_eq!(
        std::fs::read(dest.join("index.json")).unwrap(),
        before_index
    );
    assert_eq!(listing(&dest.join("blobs/sha256")), before_blobs);
    assert_eq!(
        Layout::open(&dest).manifest_digest(Some("v1")).unwrap(),
        d1.trim()
    );
}

#[test]
fn tags_accumulate_in_an_existing_layout() {
    let env = TestEnv::new();
    let (repo, _) = env.repo_with("repo", "sample", SAMPLE).unwrap();
    let dest = env.path().join("out");
    let a = run_stdout(&mut encapsulate(
        &env,
        &repo,
        "sample",
        &format!("oci:{}:a", dest.display()),
    ))
    .unwrap();
    let b = run_stdout(
        encapsulate(&env, &repo, "sample", &format!("oci:{}:b", dest.display()))
            .args(["--label", "x=y"]),
    )
    .unwrap();
    let l = Layout::open(&dest);
    assert_eq!(l.manifest_digest(Some("a")).unwrap(), a.trim());
    assert_eq!(l.manifest_digest(Some("b")).unwrap(), b.trim());
    assert_ne!(a, b);
    // Re-exporting tag a replaces only a.
    run_stdout(
        encapsulate(&env, &repo, "sample", &format!("oci:{}:a", dest.display()))
            .args(["--label", "x=z"]),
    )
    .unwrap();
    assert_eq!(l.index().unwrap()["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(l.manifest_digest(Some("b")).unwrap(), b.trim());
}
