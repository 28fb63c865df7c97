//! Hostile derived layers: each refused with an error naming the layer, the entry and the
//! rule (or handled the documented safe way), no panic, no ref, `ostree fsck` clean, and
//! nothing written outside the repo.

use ostree_bridge_tests::oci::write_plain_image;
use ostree_bridge_tests::{run, run_stdout, TestEnv};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One tar entry to generate.
enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Fifo(&'a str),
    Char(&'a str),
    /// Raw path bytes (non-UTF-8).
    RawFile(&'a [u8]),
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        let (path, data): (&[u8], &[u8]) = match e {
            E::File(p, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                (p.as_bytes(), d)
            }
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (p.as_bytes(), &[])
            }
            E::Link(p, t) | E::Hard(p, t) => {
                h.set_entry_type(if matches!(e, E::Link(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_link_name_literal(t.as_bytes()).unwrap();
                (p.as_bytes(), &[])
            }
            E::Fifo(p) => {
                h.set_entry_type(tar::EntryType::Fifo);
                (p.as_bytes(), &[])
            }
            E::Char(p) => {
                h.set_entry_type(tar::EntryType::Char);
                (p.as_bytes(), &[])
            }
            E::RawFile(p) => {
                h.set_entry_type(tar::EntryType::Regular);
                (*p, &[])
            }
        };
        // Write names literally: the builder's own path checks would refuse the hostile ones.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

struct Case {
    env: TestEnv,
    repo: PathBuf,
    victim: PathBuf,
    n: usize,
}

impl Case {
    fn new() -> Self {
        let env = TestEnv::new();
        let repo = env.path().join("repo");
        run(Command::new("ostree")
            .arg("init")
            .arg(format!("--repo={}", repo.display()))
            .arg("--mode=bare"))
        .unwrap();
        let victim = env.path().join("victim");
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("keep"), "untouched").unwrap();
        Case {
            env,
            repo,
            victim,
            n: 0,
        }
    }

    fn pull(&mut self, layers: &[Vec<u8>]) -> (bool, String, String) {
        self.n += 1;
        let dir = self.env.path().join(format!("img{}", self.n));
        write_plain_image(&dir, layers).unwrap();
        let o = self
            .env
            .ostree_container()
            .args(["image", "pull", "--json"])
            .arg(&self.repo)
            .arg(format!("oci:{}", dir.display()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!stderr.contains("panicked"), "{stderr}");
        // Nothing outside: the victim is as it was; the repo is consistent.
        let names: Vec<_> = std::fs::read_dir(&self.victim)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "victim dir changed");
        assert_eq!(
            std::fs::read_to_string(self.victim.join("keep")).unwrap(),
            "untouched"
        );
        run(Command::new("ostree")
            .arg("fsck")
            .arg(format!("--repo={}", self.repo.display())))
        .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string(),
            stderr,
        )
    }

    fn refused(&mut self, layers: &[Vec<u8>], rule: &str) {
        let before = refs(&self.repo);
        let (ok, _, err) = self.pull(layers);
        assert!(!ok, "accepted a layer that breaks: {rule}");
        assert!(err.contains(rule), "want {rule:?} in: {err}");
        assert!(err.contains("layer 0 (sha256:"), "names the layer: {err}");
        assert_eq!(refs(&self.repo), before, "no ref for a refused image");
    }
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
fn hostile_paths_links_and_whiteouts_are_refused() {
    let mut c = Case::new();
    let v = c.victim.display().to_string();
    c.refused(&[tar_of(&[E::File("usr/../../x", b"x")])], "`..` component");
    c.refused(&[tar_of(&[E::File("../escape", b"x")])], "`..` component");
    c.refused(&[tar_of(&[E::RawFile(b"usr/bad\xff")])], "not UTF-8");
    c.refused(
        &[tar_of(&[E::File("usr/.wh..", b"")])],
        "malformed whiteout",
    );
    c.refused(
        &[tar_of(&[E::File("usr/.wh...", b"")])],
        "malformed whiteout",
    );
    c.refused(&[tar_of(&[E::File("usr/.wh.", b"")])], "malformed whiteout");
    c.refused(
        &[tar_of(&[E::File("usr/.wh.../../x", b"")])],
        "`..` component",
    );
    c.refused(
        &[tar_of(&[E::Hard("usr/h", "usr/missing")])],
        "is not a file in this layer or below",
    );
    c.refused(
        &[tar_of(&[E::Hard("usr/h", "../../etc/passwd")])],
        "`..` component",
    );
    c.refused(&[tar_of(&[E::Link("usr/l", "")])], "symlink without target");
    c.refused(
        &[tar_of(&[E::Dir("usr/d"), E::Hard("usr/h", "usr/d")])],
        "is not a file in this layer or below",
    );
    c.refused(
        &[tar_of(&[E::File(".wh..wh..opq", b"")])],
        "opaque marker at the root",
    );
    // Absolute paths are taken relative to the image root, never the host's.
    let abs = format!("{v}/keep");
    let (ok, out, err) = c.pull(&[tar_of(&[E::File(&abs, b"overwritten?")])]);
    assert!(ok, "{err}");
    assert!(out.contains("\"dropped\""), "{out}");
}

#[test]
fn symlinks_pointing_outside_stay_data() {
    let mut c = Case::new();
    let v = c.victim.display().to_string();
    // A symlink to the victim, then a write and a whiteout "through" it: in a tree merge the
    // symlink is an entry, the later path replaces it; nothing on the host is touched.
    let l1 = tar_of(&[
        E::Dir("usr"),
        E::Link("usr/out", &v),
        E::Link("usr/rel", "../../../../.."),
    ]);
    let l2 = tar_of(&[
        E::File("usr/out/keep", b"pwned"),
        E::File("usr/rel/.wh.keep", b""),
    ]);
    let (ok, out, err) = c.pull(&[l1, l2]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let commit = r["merged_commit"].as_str().unwrap();
    // usr/out is now a directory of the image holding "keep"; usr/rel is still the symlink.
    let ls = run_stdout(
        Command::new("ostree")
            .arg(format!("--repo={}", c.repo.display()))
            .args(["ls", "-R", commit, "/usr"]),
    )
    .unwrap();
    assert!(ls.contains("/usr/out/keep"), "{ls}");
    assert!(ls.contains("/usr/rel -> ../../../../.."), "{ls}");
}

#[test]
fn special_files_are_dropped_and_reported() {
    let mut c = Case::new();
    let (ok, out, err) = c.pull(&[tar_of(&[
        E::Dir("usr"),
        E::Fifo("usr/fifo"),
        E::Char("usr/null"),
        E::File("usr/ok", b"ok"),
        E::File("opt/app", b"x"),
        E::File("tmp/junk", b"x"),
    ])]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let d = &r["policy"]["dropped"];
    assert_eq!(d["fifo"]["count"], 1, "{r}");
    assert_eq!(d["device"]["count"], 1, "{r}");
    assert_eq!(d["opt"]["examples"][0], "/opt/app");
    assert_eq!(d["tmp"]["count"], 1);
}

/// Layer semantics the OCI spec fixes, found by review: whiteouts and opaque markers act on
/// lower layers only; hardlinks follow stream order.
#[test]
fn whiteouts_opaque_and_hardlinks_follow_the_spec() {
    let mut c = Case::new();
    let lower = tar_of(&[
        E::Dir("usr"),
        E::Dir("usr/d"),
        E::File("usr/d/old", b"old"),
        E::Dir("usr/d/sub"),
        E::File("usr/d/sub/oldchild", b"oc"),
        E::File("usr/keep", b"k"),
    ]);
    let upper = tar_of(&[
        // opqA: a same-layer file before the marker survives, lower content goes.
        E::File("usr/d/sub/new", b"new"),
        E::File("usr/d/.wh..wh..opq", b""),
        // whS: a whiteout does not hide this layer's own entry.
        E::File("usr/x", b"x"),
        E::File("usr/.wh.x", b""),
        // hl1: a link takes the target as it was when the link came.
        E::File("usr/a", b"v1"),
        E::Hard("usr/b", "usr/a"),
        E::File("usr/a", b"version2"),
        // hl2: a later file at the link's path wins.
        E::Hard("usr/c", "usr/keep"),
        E::File("usr/c", b"later file"),
    ]);
    let (ok, out, err) = c.pull(&[lower, upper]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let commit = r["merged_commit"].as_str().unwrap().to_string();
    let repo = c.repo.clone();
    let cat = |p: &str| {
        run_stdout(
            Command::new("ostree")
                .arg(format!("--repo={}", repo.display()))
                .args(["cat", &commit, p]),
        )
        .ok()
    };
    let ls = run_stdout(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["ls", "-R", &commit, "/usr"]),
    )
    .unwrap();
    assert_eq!(cat("/usr/d/sub/new").as_deref(), Some("new"), "{ls}");
    assert!(
        !ls.contains("/usr/d/old") && !ls.contains("oldchild"),
        "lower content hidden: {ls}"
    );
    assert_eq!(cat("/usr/x").as_deref(), Some("x"), "{ls}");
    assert_eq!(cat("/usr/b").as_deref(), Some("v1"));
    assert_eq!(cat("/usr/a").as_deref(), Some("version2"));
    assert_eq!(cat("/usr/c").as_deref(), Some("later file"));
}

/// A GNU long-name entry that claims 2 MiB: stopped at its header, before the tar parser would
/// read it into memory.
#[test]
fn oversized_tar_metadata_is_stopped_at_its_header() {
    let mut c = Case::new();
    let mut lh = tar::Header::new_gnu();
    lh.set_entry_type(tar::EntryType::GNULongName);
    lh.set_size(2 << 20);
    lh.set_mode(0o644);
    lh.set_cksum();
    let mut layer = lh.as_bytes().to_vec();
    layer.extend(std::iter::repeat_n(b'a', 8192));
    c.refused(&[layer], "over the 1048576 byte limit");
}
