//! `image pull`: pure ostree images keep their checksum; a podman-built derived image merges
//! into a commit that matches what `podman export` shows, modulo the documented path policy.

use ostree_bridge_tests::oci::tar_entries;
use ostree_bridge_tests::{run, run_stdout, TestEnv, SAMPLE};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

#[test]
fn pure_image_keeps_its_checksum_and_repulls_nothing() {
    let env = TestEnv::new();
    let (src, csum) = env.repo_with("src", "sample", SAMPLE).unwrap();
    let oci = env.path().join("oci");
    run(env
        .ostree_container()
        .args(["encapsulate", "-q", "--repo"])
        .arg(&src)
        .arg("sample")
        .arg(format!("oci:{}:1", oci.display())))
    .unwrap();
    let repo = env.new_repo("dst");
    let imgref = format!("ostree-unverified-image:oci:{}:1", oci.display());
    let r = env.pull_json(&repo, &imgref);
    assert_eq!(r["merged_commit"], csum.as_str());
    assert!(r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["action"] == "fetched"));
    let refname = r["image_ref"].as_str().unwrap().to_string();
    assert!(
        refname.starts_with("ostree/container/image/oci_3A_"),
        "{refname}"
    );
    let resolved = run_stdout(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["rev-parse", &refname]),
    )
    .unwrap();
    assert_eq!(resolved.trim(), csum);
    // Again: every layer is present, nothing to fetch.
    let r2 = env.pull_json(&repo, &imgref);
    assert!(
        r2["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["action"] == "present"),
        "{r2}"
    );
    assert_eq!(r2["bytes_to_fetch"], 0);
    // Text output ends with ostree-ext's line.
    let text = run_stdout(
        env.ostree_container()
            .args(["image", "pull"])
            .arg(&repo)
            .arg(&imgref),
    )
    .unwrap();
    assert!(
        text.trim_end()
            .ends_with(&format!("Wrote: {imgref} => {csum}")),
        "{text}"
    );
    run(Command::new("ostree")
        .arg("fsck")
        .arg(format!("--repo={}", repo.display())))
    .unwrap();
}

/// (kind, mode, uid, gid, link target or content sha256) by path.
type Listing = BTreeMap<String, (char, u32, u64, u64, String)>;

fn commit_listing(repo: &Path, rev: &str) -> Listing {
    let r = storage_bridge::commit::open_repo(repo).unwrap();
    let c = storage_bridge::commit::resolve_commit(&r, rev).unwrap();
    let t = storage_bridge::commit::CommitTree::load(&r, &c).unwrap();
    let mut out = Listing::new();
    for d in &t.dirs {
        if !d.path.is_empty() {
            let m = &t.dirmetas[&d.dirmeta].1;
            out.insert(
                d.path.clone(),
                (
                    'd',
                    m.mode & 0o7777,
                    m.uid.into(),
                    m.gid.into(),
                    String::new(),
                ),
            );
        }
        for (name, csum) in &d.files {
            let p = storage_bridge::commit::join(&d.path, name);
            let (meta, content) = storage_bridge::commit::open_file(&r, csum).unwrap();
            let v = match (&meta.symlink, content) {
                (Some(t), _) => (
                    'l',
                    meta.mode & 0o7777,
                    meta.uid.into(),
                    meta.gid.into(),
                    t.clone(),
                ),
                (None, Some(mut rd)) => {
                    let mut buf = Vec::new();
                    rd.read_to_end(&mut buf).unwrap();
                    (
                        'f',
                        meta.mode & 0o7777,
                        meta.uid.into(),
                        meta.gid.into(),
                        hex::encode(Sha256::digest(&buf)),
                    )
                }
                (None, None) => panic!("regular file without content"),
            };
            out.insert(p, v);
        }
    }
    out
}

/// A container filesystem tar (podman export) under the path policy: etc → usr/etc; only usr,
/// usr/etc, var and the (empty) run/tmp/proc/sys/dev kept.
fn export_listing(tar: &[u8]) -> Listing {
    let entries = tar_entries(tar).unwrap();
    // Regular files and symlinks by path: what a hardlink to them is.
    let mut content: BTreeMap<String, (char, String)> = BTreeMap::new();
    for e in &entries {
        let key = e
            .path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if let Some(s) = &e.content_sha256 {
            content.insert(key, ('f', s.clone()));
        } else if e.kind == b'2' {
            content.insert(key, ('l', e.link.clone().unwrap_or_default()));
        }
    }
    let mut out = Listing::new();
    for e in entries {
        let p = e
            .path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if p.is_empty() {
            continue;
        }
        let (top, rest) = p.split_once('/').unwrap_or((&p, ""));
        let mapped = match top {
            "usr" | "var" => p.clone(),
            "etc" => {
                if rest.is_empty() {
                    "usr/etc".into()
                } else {
                    format!("usr/etc/{rest}")
                }
            }
            "run" | "tmp" | "proc" | "sys" | "dev" if rest.is_empty() => p.clone(),
            _ => continue,
        };
        let mode = e.mode & 0o7777;
        let v = match e.kind {
            b'5' => ('d', mode, e.uid, e.gid, String::new()),
            b'2' => ('l', mode, e.uid, e.gid, e.link.clone().unwrap_or_default()),
            b'0' => (
                'f',
                mode,
                e.uid,
                e.gid,
                e.content_sha256.clone().unwrap_or_default(),
            ),
            b'1' => {
                let t = e.link.clone().unwrap_or_default();
                let t = t.trim_start_matches("./").trim_start_matches('/');
                let (k, c) = content
                    .get(t)
                    .unwrap_or_else(|| panic!("{p}: hardlink to {t}, not a file of the export"));
                (*k, mode, e.uid, e.gid, c.clone())
            }
            _ => continue,
        };
        out.insert(mapped, v);
    }
    out
}

/// The merged commit's listing, checked against what `podman export` shows of `tag`, modulo
/// the documented path policy; returned for spot checks.
fn assert_matches_podman(env: &TestEnv, repo: &Path, merged: &str, tag: &str) -> Listing {
    // What podman shows of the image.
    let cid = run_stdout(env.podman.podman().args(["create", tag, "/usr/bin/sh"])).unwrap();
    let tarp = env
        .path()
        .join(format!("export-{}.tar", tag.replace(['/', ':'], "_")));
    run(env
        .podman
        .podman()
        .args(["export", "-o"])
        .arg(&tarp)
        .arg(cid.trim()))
    .unwrap();
    let mut want = export_listing(&std::fs::read(&tarp).unwrap());
    let mut got = commit_listing(repo, merged);
    // Runtime mount points podman creates in every container, and the ostree skeleton.
    for p in [
        "usr/etc/hostname",
        "usr/etc/resolv.conf",
        "usr/etc/hosts",
        "run/.containerenv",
    ] {
        want.remove(p);
        got.remove(p);
    }
    // The base's own top-level entries (bin -> usr/bin, boot, …) stay in the merged commit;
    // the comparison covers what the path policy imports from a container filesystem.
    for p in ["bin", "lib", "sbin", "boot"] {
        assert!(got.contains_key(p), "base entry {p} kept");
    }
    got.retain(|p, _| {
        let top = p.split('/').next().unwrap_or("");
        matches!(top, "usr" | "var")
            || (["run", "tmp", "proc", "sys", "dev"].contains(&top) && !p.contains('/'))
    });
    // The export adds var/tmp to images whose commit lacks it (ostree makes it at boot).
    want.remove("var/tmp");
    let only_want: Vec<_> = want
        .iter()
        .filter(|(p, v)| got.get(*p) != Some(v))
        .collect();
    let only_got: Vec<_> = got
        .iter()
        .filter(|(p, v)| want.get(*p) != Some(v))
        .collect();
    assert!(only_want.is_empty() && only_got.is_empty(), "podman shows but commit lacks: {only_want:#?}\ncommit has but podman does not: {only_got:#?}");
    got
}

#[test]
fn a_podman_built_derived_image_merges_like_podman_sees_it() {
    let env = TestEnv::new();
    let (src, base) = env.repo_with("src", "sample", SAMPLE).unwrap();
    run(env
        .ostree_container()
        .args(["encapsulate", "-q", "--repo"])
        .arg(&src)
        .arg("sample")
        .arg(env.cstor_ref("localhost/base:1")))
    .unwrap();
    env.podman_build(
        "localhost/derived:1",
        "FROM localhost/base:1\n\
         RUN echo new > /usr/share/new-file && ln /usr/share/new-file /usr/share/new-hardlink \
          && mkdir -p /etc/newdir && echo cfg > /etc/newdir/cfg && echo appended >> /usr/lib/os-release \
          && rm /usr/bin/su-like && rm -rf /usr/share/doc/hello \
          && rm -rf /etc/sample.d && ln -s os-release /etc/sample.d \
          && mkdir -p /var/lib/app /opt/app && echo state > /var/lib/app/state && echo bin > /opt/app/bin \
          && ln /usr/bin/hello /usr/bin/hello-third\n\
         RUN rm -rf /usr/share/doc && mkdir /usr/share/doc && echo n > /usr/share/doc/only \
          && chmod 0700 /usr/share/doc && echo second >> /usr/share/new-file\n",
    )
    .unwrap();

    let repo = env.new_repo("dst");
    // The base first: the derived pull then fetches only its own layers.
    env.pull_json(&repo, &env.cstor_ref("localhost/base:1"));
    let r = env.pull_json(
        &repo,
        &format!(
            "ostree-unverified-image:{}",
            env.cstor_ref("localhost/derived:1")
        ),
    );
    assert_eq!(r["base_commit"], base.as_str());
    let layers = r["layers"].as_array().unwrap();
    let derived: Vec<&Value> = layers.iter().filter(|l| l["kind"] == "derived").collect();
    assert_eq!(derived.len(), 2);
    assert!(
        layers
            .iter()
            .filter(|l| l["kind"] == "ostree")
            .all(|l| l["action"] == "present"),
        "{r}"
    );
    let merged = r["merged_commit"].as_str().unwrap().to_string();
    assert_ne!(merged, base);
    // /opt is dropped and said so.
    let dropped = &r["policy"]["dropped"];
    assert!(dropped["opt"]["count"].as_u64().unwrap() >= 1, "{r}");
    assert!(
        dropped["opt"]["examples"].to_string().contains("/opt/app"),
        "{r}"
    );
    assert!(
        r["policy"]["remapped"]
            .to_string()
            .contains("/etc/newdir/cfg"),
        "{r}"
    );

    let got = assert_matches_podman(&env, &repo, &merged, "localhost/derived:1");
    // Spot checks of what the Containerfile did.
    // RUN ln: same content (the second RUN appended to new-file, which breaks that link in
    // overlay too; podman agrees, as the comparison above shows).
    assert_eq!(got["usr/bin/hello-third"], got["usr/bin/hello"]);
    assert_ne!(got["usr/share/new-hardlink"], got["usr/share/new-file"]);
    assert!(!got.contains_key("usr/bin/su-like"));
    assert_eq!(got["usr/etc/sample.d"].0, 'l');
    assert_eq!(got["usr/share/doc"].1, 0o700);
    assert!(!got.contains_key("usr/share/doc/hello"));
    assert!(got.contains_key("var/lib/app/state"));
    run(Command::new("ostree")
        .arg("fsck")
        .arg(format!("--repo={}", repo.display())))
    .unwrap();

    // A second generation: whiteouts of the first's files, a symlink back to a directory, a
    // hardlink to a base file, an edit of an edited file. Only its one layer is read.
    env.podman_build(
        "localhost/derived:2",
        "FROM localhost/derived:1\n\
         RUN rm /usr/share/new-hardlink && rm -rf /etc/newdir \
          && rm /etc/sample.d && mkdir /etc/sample.d && echo back > /etc/sample.d/again \
          && ln /usr/bin/busybox /usr/bin/bb-link && echo gen2 >> /usr/lib/os-release \
          && rm -rf /var/lib/app && mkdir -p /usr/share/doc/x && touch /usr/share/doc/x/y\n",
    )
    .unwrap();
    let r2 = env.pull_json(&repo, &env.cstor_ref("localhost/derived:2"));
    let fetched: Vec<u64> = r2["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["action"] == "fetched")
        .map(|l| l["index"].as_u64().unwrap())
        .collect();
    assert_eq!(fetched, [layers.len() as u64], "{r2}");
    let merged2 = r2["merged_commit"].as_str().unwrap().to_string();
    let got2 = assert_matches_podman(&env, &repo, &merged2, "localhost/derived:2");
    assert!(!got2.contains_key("usr/share/new-hardlink"));
    assert!(!got2.contains_key("usr/etc/newdir"));
    assert_eq!(got2["usr/etc/sample.d"].0, 'd');
    assert!(got2.contains_key("usr/etc/sample.d/again"));
    assert!(!got2.contains_key("usr/etc/sample.d/owned-by-1000"));
    assert_eq!(got2["usr/bin/bb-link"], got2["usr/bin/busybox"]);
    assert!(!got2.contains_key("var/lib/app"));
    run(Command::new("ostree")
        .arg("fsck")
        .arg(format!("--repo={}", repo.display())))
    .unwrap();
}

#[test]
fn list_metadata_history_and_remove() {
    let env = TestEnv::new();
    let (src, csum) = env.repo_with("src", "sample", SAMPLE).unwrap();
    let oci = env.path().join("oci");
    run(env
        .ostree_container()
        .args(["encapsulate", "-q", "--repo"])
        .arg(&src)
        .arg("sample")
        .arg(format!("oci:{}:1", oci.display())))
    .unwrap();
    let repo = env.new_repo("dst");
    let imgref = format!("oci:{}:1", oci.display());
    env.pull_json(&repo, &format!("ostree-unverified-image:{imgref}"));
    let l: Value = serde_json::from_str(
        &run_stdout(
            env.ostree_container()
                .args(["image", "list", "--json", "--repo"])
                .arg(&repo),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(l.as_array().unwrap().len(), 1);
    assert_eq!(l[0]["imgref"], imgref.as_str());
    assert_eq!(l[0]["commit"], csum.as_str());
    assert_eq!(l[0]["version"], "1.0");
    let m: Value = serde_json::from_str(
        &run_stdout(
            env.ostree_container()
                .args(["image", "metadata", "--repo"])
                .arg(&repo)
                .arg(&imgref),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(m["schemaVersion"], 2);
    let c: Value = serde_json::from_str(
        &run_stdout(
            env.ostree_container()
                .args(["image", "metadata", "--config", "--repo"])
                .arg(&repo)
                .arg(&imgref),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(c["config"]["Labels"]["ostree.commit"], csum.as_str());
    let h = run_stdout(
        env.ostree_container()
            .args(["image", "history", "--repo"])
            .arg(&repo)
            .arg(&imgref),
    )
    .unwrap();
    assert!(
        h.contains("ostree-bridge sample OS") && h.contains("busybox"),
        "{h}"
    );
    run(env
        .ostree_container()
        .args(["image", "remove", "--repo"])
        .arg(&repo)
        .arg(&imgref))
    .unwrap();
    let l = run_stdout(
        env.ostree_container()
            .args(["image", "list", "--json", "--repo"])
            .arg(&repo),
    )
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&l)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let o = env
        .ostree_container()
        .args(["image", "remove", "--repo"])
        .arg(&repo)
        .arg(&imgref)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("no image"));
}

#[test]
fn progress_fd_reports_the_plan_each_layer_and_the_result() {
    let env = TestEnv::new();
    let (src, csum) = env.repo_with("src", "sample", SAMPLE).unwrap();
    let oci = env.path().join("oci");
    env.encapsulate(&src, "sample", &format!("oci:{}", oci.display()), &[])
        .unwrap();
    let repo = env.new_repo("dst");
    let events = env.path().join("events.jsonl");
    // The descriptor is opened by the shell, as a script would.
    let bin = ostree_bridge_tests::workspace_bin("ostree-container");
    run(env
        .command("sh")
        .arg("-c")
        .arg("exec \"$0\" image pull -q --progress-fd 3 \"$1\" \"$2\" 3>\"$3\"")
        .arg(&bin)
        .arg(&repo)
        .arg(format!("oci:{}", oci.display()))
        .arg(&events))
    .unwrap();
    let lines: Vec<Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().all(|e| e["v"] == 1), "{lines:?}");
    let kinds: Vec<&str> = lines.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"start"));
    assert_eq!(kinds.last(), Some(&"done"));
    let plan = lines.iter().find(|e| e["event"] == "plan").unwrap();
    let n = plan["layers"].as_array().unwrap().len();
    assert!(n >= 2, "{plan}");
    // Every layer read starts and ends, and its bytes add up to the blob's size.
    for l in plan["layers"].as_array().unwrap() {
        let i = &l["index"];
        assert!(lines
            .iter()
            .any(|e| e["event"] == "layer_start" && &e["index"] == i));
        let done = lines
            .iter()
            .find(|e| e["event"] == "layer_done" && &e["index"] == i)
            .unwrap_or_else(|| panic!("no layer_done for {i}: {lines:?}"));
        assert_eq!(done["bytes_done"], l["size"], "{done}");
    }
    let last = lines.last().unwrap();
    assert_eq!(last["result"]["merged_commit"], csum.as_str());

    // A failure ends with an error event.
    let bad = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" image pull --progress-fd 3 \"$1\" oci:/nonexistent 3>\"$2\"")
        .arg(&bin)
        .arg(&repo)
        .arg(&events)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let text = std::fs::read_to_string(&events).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "error");
    assert!(last["message"].as_str().unwrap().contains("/nonexistent"));
}

/// A base that boots with composefs (its prepare-root.conf says so) lets derived layers keep
/// other top-level directories; the same layer over a plain base drops them. Each reading is
/// cached under its own policy.
#[test]
fn a_composefs_base_keeps_other_toplevel_directories() {
    use ostree_bridge_tests::oci::{ImageParts, RawLayer};
    let env = TestEnv::new();
    let layer = {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in [
            ("opt/app/bin", &b"app"[..]),
            ("boot/extra", b"x"),
            ("usr/x", b"x"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            b.append_data(&mut h, p, data).unwrap();
        }
        b.into_inner().unwrap()
    };
    let derive = |name: &str, text: &str| {
        let (src, _) = env.repo_with(name, "os", text).unwrap();
        let base = env.path().join(format!("{name}-base"));
        env.encapsulate(&src, "os", &format!("oci:{}", base.display()), &[])
            .unwrap();
        let mut parts = ImageParts::read(&base).unwrap();
        parts.layers.push(RawLayer::tar(layer.clone()));
        parts.sync_diff_ids();
        let out = env.path().join(format!("{name}-derived"));
        parts.write(&out).unwrap();
        format!("oci:{}", out.display())
    };
    let plain = derive("plain", "file usr/lib/os-release content=\"ID=a\\n\"\n");
    let cfs = derive(
        "cfs",
        "file usr/lib/os-release content=\"ID=b\\n\"\n\
         file usr/lib/ostree/prepare-root.conf content=\"[composefs]\\nenabled = yes\\n\"\n",
    );
    let repo = env.new_repo("dst");
    let ls = |commit: &str, path: &str| {
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["ls", commit, path])
            .output()
            .unwrap()
            .status
            .success()
    };
    let r = env.pull_json(&repo, &plain);
    assert_eq!(r["path_policy"]["keep_toplevel"], false);
    assert!(
        r["policy"]["dropped"]["opt"]["count"].as_u64().unwrap() >= 1,
        "{r}"
    );
    let c = r["merged_commit"].as_str().unwrap().to_string();
    assert!(!ls(&c, "/opt/app/bin") && ls(&c, "/usr/x"));
    // Over the composefs base, the same layer (same diff_id, cached under the other policy)
    // is read again and keeps /opt; /boot stays dropped.
    let r = env.pull_json(&repo, &cfs);
    assert_eq!(r["path_policy"]["keep_toplevel"], true, "{r}");
    let derived = r["layers"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(derived["action"], "fetched", "{r}");
    let c = r["merged_commit"].as_str().unwrap().to_string();
    assert!(ls(&c, "/opt/app/bin"), "{r}");
    assert!(!ls(&c, "/boot/extra"));
    assert!(
        r["policy"]["dropped"]["boot"]["count"].as_u64().unwrap() >= 1,
        "{r}"
    );
    // Again: now cached under that policy.
    let again = env.pull_json(&repo, &cfs);
    assert_eq!(again["bytes_to_fetch"], 0, "{again}");
    assert_eq!(again["merged_commit"], c.as_str());
    run(Command::new("ostree")
        .arg("fsck")
        .arg(format!("--repo={}", repo.display())))
    .unwrap();
}
