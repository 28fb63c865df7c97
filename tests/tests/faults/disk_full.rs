//! A full disk under the repo or the destination.

use super::kills_export::layout_blobs;
use super::*;

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
