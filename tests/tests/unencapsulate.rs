//! Round trips: commit ─▶ image (every transport, ours and the peer's) ─▶ `unencapsulate` ─▶
//! the identical commit; and images that must be refused with the repo left clean.

use ostree_bridge_tests::oci::{write_plain_image, Layout};
use ostree_bridge_tests::registry::Registry;
use ostree_bridge_tests::{run, run_stdout, TestEnv, SAMPLE};
use std::path::Path;
use std::process::Command;

fn encapsulate(env: &TestEnv, repo: &Path, dest: &str, extra: &[&str]) {
    run(env
        .ostree_container()
        .args(["encapsulate", "-q", "--repo"])
        .arg(repo)
        .arg("sample")
        .arg(dest)
        .args(extra))
    .unwrap();
}

fn unencapsulate(env: &TestEnv, repo: &Path, imgref: &str, extra: &[&str]) -> std::process::Output {
    env.ostree_container()
        .args(["unencapsulate", "--repo"])
        .arg(repo)
        .arg(imgref)
        .args(extra)
        .output()
        .unwrap()
}

fn fsck(repo: &Path) {
    run(Command::new("ostree")
        .arg("fsck")
        .arg(format!("--repo={}", repo.display())))
    .unwrap();
}

fn refs(repo: &Path) -> String {
    run_stdout(
        Command::new("ostree")
            .arg("refs")
            .arg(format!("--repo={}", repo.display())),
    )
    .unwrap()
}

#[test]
fn round_trip_through_every_transport() {
    let env = TestEnv::new();
    let (src, csum) = env.repo_with("src", "sample", SAMPLE).unwrap();
    let reg = Registry::start(&env.path().join("registry")).unwrap();
    let p = env.path().display().to_string();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (format!("oci:{p}/oci-gzip:1"), vec![]),
        (format!("oci:{p}/oci-zstd"), vec!["--compression", "zstd"]),
        (format!("oci:{p}/oci-none"), vec!["--compression", "none"]),
        (format!("oci-archive:{p}/a.tar"), vec![]),
        (format!("docker-archive:{p}/d.tar"), vec![]),
        (format!("dir:{p}/dir"), vec![]),
        (env.cstor_ref("localhost/sample:1"), vec![]),
        (
            format!("docker://{}/sample:1", reg.addr),
            vec!["--dest-tls-verify=false"],
        ),
    ];
    for (i, (dest, extra)) in cases.iter().enumerate() {
        encapsulate(&env, &src, dest, extra);
        let repo = env.new_repo(&format!("dst{i}"));
        let mut more = vec!["--write-ref", "imported"];
        if dest.starts_with("docker://") {
            more.push("--src-tls-verify=false");
        }
        let out = unencapsulate(
            &env,
            &repo,
            &format!("ostree-unverified-image:{dest}"),
            &more,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.trim(),
            format!("Imported: imported => {csum}"),
            "{dest}"
        );
        fsck(&repo);
        // image pull gives the same commit, read the way the transport allows.
        let repo = env.new_repo(&format!("pull{i}"));
        let mut pull = env.ostree_container();
        pull.args(["image", "pull", "--json"]).arg(&repo).arg(dest);
        if dest.starts_with("docker://") {
            pull.arg("--src-tls-verify=false");
        }
        let r: serde_json::Value = serde_json::from_str(&run_stdout(&mut pull).unwrap()).unwrap();
        assert_eq!(r["merged_commit"], csum.as_str(), "{dest}");
        let want = if dest.starts_with("oci:") {
            "oci-layout"
        } else if dest.starts_with("docker-archive:") {
            "staged-copy"
        } else {
            "image-proxy"
        };
        assert_eq!(r["read_via"], want, "{dest}");
        fsck(&repo);
    }
}

#[cfg_attr(
    not(peer_available),
    ignore = "../shared/bench/peer-ostree-ext is missing: the interop test needs the peer"
)]
#[test]
fn imports_what_the_peer_writes() {
    let env = TestEnv::new();
    let peer = ostree_bridge_tests::peer_binary().expect("building the peer (ostree-ext)");
    let (src, csum) = env.repo_with("src", "sample", SAMPLE).unwrap();
    let out = env.path().join("peer-oci");
    run(env
        .command(&peer)
        .args(["container", "encapsulate", "--repo"])
        .arg(&src)
        .arg("sample")
        .arg(format!("oci:{}", out.display())))
    .unwrap();
    // And chunked, with ostree-ext's content metadata (one layer per component).
    let ls = run_stdout(
        Command::new("ostree")
            .arg(format!("--repo={}", src.display()))
            .args(["ls", "-R", "-C", "sample"]),
    )
    .unwrap();
    let mut mapping = serde_json::Map::new();
    for l in ls
        .lines()
        .filter(|l| l.starts_with('-') || l.starts_with('l'))
    {
        let f: Vec<&str> = l.split_whitespace().collect();
        let comp = if f[5].contains("/bin/") {
            "bin"
        } else {
            "rest"
        };
        mapping.insert(f[4].to_string(), comp.into());
    }
    let size = |id: &str| serde_json::json!({"identifier": id, "name": id, "srcid": id, "change_time_offset": 1, "change_frequency": 1, "size": 1000});
    let cm = serde_json::json!({"map": mapping, "sizes": [size("bin"), size("rest")]});
    let cmf = env.path().join("cm.json");
    std::fs::write(&cmf, cm.to_string()).unwrap();
    let chunked = env.path().join("peer-chunked");
    run(env
        .command(&peer)
        .args(["peer-encapsulate", "--repo"])
        .arg(&src)
        .args(["--rev", "sample", "--imgref"])
        .arg(format!("oci:{}", chunked.display()))
        .arg("--contentmeta")
        .arg(&cmf))
    .unwrap();
    assert!(
        Layout::open(&chunked).manifest(None).unwrap()["layers"]
            .as_array()
            .unwrap()
            .len()
            > 1,
        "the peer wrote a chunked image"
    );
    for img in [&out, &chunked] {
        let repo = env.new_repo(&format!(
            "dst-{}",
            img.file_name().unwrap().to_string_lossy()
        ));
        let o = unencapsulate(
            &env,
            &repo,
            &format!("ostree-unverified-image:oci:{}", img.display()),
            &[],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("Imported: {csum}")
        );
        fsck(&repo);
        // And through image pull, with the layer cache: a second pull reads nothing.
        let imgref = format!("oci:{}", img.display());
        for round in 0..2 {
            let r: serde_json::Value = serde_json::from_str(
                &run_stdout(
                    env.ostree_container()
                        .args(["image", "pull", "--json"])
                        .arg(&repo)
                        .arg(&imgref),
                )
                .unwrap(),
            )
            .unwrap();
            assert_eq!(r["merged_commit"], csum.as_str());
            if round == 1 {
                assert_eq!(r["bytes_to_fetch"], 0, "{r}");
            }
        }
        fsck(&repo);
    }
}

/// Flip one byte in the middle of the largest blob.
fn corrupt_largest_blob(dir: &Path) {
    let blobs = dir.join("blobs/sha256");
    let big = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut data = std::fs::read(&big).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    std::fs::write(&big, data).unwrap();
}

#[test]
fn refuses_corrupt_derived_and_foreign_images_leaving_the_repo_clean() {
    let env = TestEnv::new();
    let (src, _) = env.repo_with("src", "sample", SAMPLE).unwrap();
    let repo = env.new_repo("dst");
    let check = |imgref: &str, want: &str| {
        let o = unencapsulate(&env, &repo, imgref, &["--write-ref", "should-not-exist"]);
        let e = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{imgref}: unexpectedly imported");
        assert!(e.contains(want), "{imgref}: {e}");
        assert!(!e.contains("panicked"), "{e}");
        assert_eq!(refs(&repo).trim(), "", "{imgref}: a ref was written");
        fsck(&repo);
    };
    // A corrupt blob (uncompressed, so the tar parses and content reaches libostree).
    let bad = env.path().join("bad");
    encapsulate(
        &env,
        &src,
        &format!("oci:{}", bad.display()),
        &["--compression", "none"],
    );
    corrupt_largest_blob(&bad);
    check(&format!("oci:{}", bad.display()), "has digest");
    // The same, gzip-compressed: the decoder or the digest check stops it.
    let badgz = env.path().join("badgz");
    encapsulate(&env, &src, &format!("oci:{}", badgz.display()), &[]);
    corrupt_largest_blob(&badgz);
    let o = unencapsulate(&env, &repo, &format!("oci:{}", badgz.display()), &[]);
    assert!(!o.status.success());
    assert_eq!(refs(&repo).trim(), "");
    fsck(&repo);
    // A derived image: podman build on top of the export.
    encapsulate(&env, &src, &env.cstor_ref("localhost/base:1"), &[]);
    env.podman_build(
        "localhost/derived:1",
        "FROM localhost/base:1\nRUN echo hi > /usr/share/hi\n",
    )
    .unwrap();
    check(
        &env.cstor_ref("localhost/derived:1"),
        "derived image (1 layers after the ostree commit)",
    );
    // Not an ostree image at all: a plain layout without labels.
    let plain = env.path().join("plain");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    b.append_data(&mut h, "usr/share/x", &b"abc"[..]).unwrap();
    write_plain_image(&plain, &[b.into_inner().unwrap()]).unwrap();
    check(&format!("oci:{}", plain.display()), "not an ostree image");
    // Missing image and unknown transport.
    check(
        &format!("oci:{}/nope", env.path().display()),
        "no OCI image layout",
    );
    check("nope:/x", "unknown transport");
}

/// A corrupt copy of an image whose commit is already in the repo must not touch that commit:
/// no partial mark, no rewritten detached metadata.
#[test]
fn a_corrupt_copy_leaves_an_imported_commit_alone() {
    let env = TestEnv::new();
    let (src, csum) = env.repo_with("src", "sample", SAMPLE).unwrap();
    let good = env.path().join("good");
    encapsulate(
        &env,
        &src,
        &format!("oci:{}", good.display()),
        &["--compression", "none"],
    );
    let repo = env.new_repo("dst");
    assert!(unencapsulate(
        &env,
        &repo,
        &format!("oci:{}", good.display()),
        &["--write-ref", "good"]
    )
    .status
    .success());
    let bad = env.path().join("bad");
    run(Command::new("cp").arg("-a").arg(&good).arg(&bad)).unwrap();
    corrupt_largest_blob(&bad);
    // The corrupted blob is a chunk layer the layer cache holds (by diff_id): it is never read,
    // and the import gives the commit verified before.
    let o = unencapsulate(&env, &repo, &format!("oci:{}", bad.display()), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&csum));
    // Without the cache (no image ref needs its layers), the blob is read and refused.
    let p = env
        .ostree_container()
        .args(["image", "prune-layers", "--repo"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    assert!(
        String::from_utf8_lossy(&p.stdout).contains("Removed ostree/container/blob/sha256_3A_"),
        "{}",
        String::from_utf8_lossy(&p.stdout)
    );
    let o = unencapsulate(&env, &repo, &format!("oci:{}", bad.display()), &[]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("has digest"),
        "the digest is checked before parsing: {e}"
    );
    let partial: Vec<_> = std::fs::read_dir(repo.join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with("commitpartial"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
    let fsck = run_stdout(
        Command::new("ostree")
            .arg("fsck")
            .arg(format!("--repo={}", repo.display())),
    )
    .unwrap();
    assert!(!fsck.contains("partial"), "{fsck}");
    assert_eq!(refs(&repo).trim(), "good");
    assert_eq!(
        run_stdout(
            Command::new("ostree")
                .arg(format!("--repo={}", repo.display()))
                .args(["rev-parse", "good"])
        )
        .unwrap()
        .trim(),
        csum
    );
}
