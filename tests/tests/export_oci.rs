//! Export to `oci:` directories: format, labels, determinism, chunking, prior-build layout,
//! and the peer (ostree-ext) importing what we write.

use ostree_bridge_tests::oci::{tar_entries, Layout, TarEntry};
use ostree_bridge_tests::{run, run_stdout, TestEnv, SAMPLE};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

fn export(env: &TestEnv, repo: &std::path::Path, rev: &str, dest: &str, extra: &[&str]) -> String {
    let mut c = env.ostree_container();
    c.arg("encapsulate")
        .arg("--repo")
        .arg(repo)
        .arg(rev)
        .arg(dest)
        .args(extra);
    run_stdout(&mut c).unwrap().trim().to_string()
}

/// Every layer's entries, by layer index.
fn layers(l: &Layout, tag: Option<&str>) -> (Value, Value, Vec<Vec<TarEntry>>) {
    let m = l.manifest(tag).unwrap();
    let cfg = l.config(&m).unwrap();
    let diff_ids = cfg["rootfs"]["diff_ids"].as_array().unwrap().clone();
    let ls = m["layers"].as_array().unwrap();
    assert_eq!(
        ls.len(),
        diff_ids.len(),
        "manifest layers vs config diff_ids"
    );
    let entries = ls
        .iter()
        .zip(&diff_ids)
        .map(|(layer, d)| tar_entries(&l.layer_tar(layer, d.as_str()).unwrap()).unwrap())
        .collect();
    (m, cfg, entries)
}

#[test]
fn labels_annotations_history_and_layout() {
    let env = TestEnv::new();
    let (repo, csum) = env.repo_with("repo", "sample", SAMPLE).unwrap();
    let out = env.path().join("oci");
    let digest = export(
        &env,
        &repo,
        "sample",
        &format!("oci:{}:v1", out.display()),
        &["--label", "vendor=acme"],
    );
    let l = Layout::open(&out);
    assert_eq!(l.manifest_digest(Some("v1")).unwrap(), digest);
    let (m, cfg, entries) = layers(&l, Some("v1"));
    let labels = &cfg["config"]["Labels"];
    assert_eq!(labels["ostree.commit"], csum.as_str());
    assert_eq!(labels["ostree.bootable"], "true");
    assert_eq!(labels["containers.bootc"], "1");
    assert_eq!(labels["ostree.linux"], "6.1.0-sample");
    assert_eq!(labels["org.opencontainers.image.version"], "1.0");
    assert_eq!(labels["vendor"], "acme");
    let diff_ids = cfg["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(
        labels["ostree.final-diffid"],
        diff_ids.last().unwrap().clone()
    );
    // Manifest annotations mirror the labels.
    assert_eq!(&m["annotations"], labels);
    // One history entry per layer; layer 0 named by the commit subject.
    let hist = cfg["history"].as_array().unwrap();
    assert_eq!(hist.len(), diff_ids.len());
    assert_eq!(hist[0]["created_by"], "ostree-bridge sample OS");
    assert_eq!(
        hist.last().unwrap()["created_by"],
        "Reserved for new packages"
    );
    assert_eq!(cfg["created"], "2023-11-14T22:13:20Z");
    // Layer 0: commit first among objects, every directory, etc for usr/etc, var/tmp added.
    let l0 = &entries[0];
    assert_eq!(l0[0].path, "./");
    let first_obj = l0
        .iter()
        .find(|e| e.path.starts_with("sysroot/ostree/repo/objects/") && e.kind == b'0')
        .unwrap();
    assert!(first_obj.path.ends_with(".commit"), "{}", first_obj.path);
    let dirs: BTreeSet<&str> = l0
        .iter()
        .filter(|e| e.kind == b'5')
        .map(|e| e.path.as_str())
        .collect();
    for d in [
        "usr",
        "usr/bin",
        "etc",
        "etc/sample.d",
        "var/tmp",
        "usr/lib/modules/6.1.0-sample",
    ] {
        assert!(dirs.contains(d), "layer 0 lacks directory {d}");
    }
    assert!(!dirs.contains("usr/etc"), "usr/etc must be written as etc");
    // Chunk layers carry ostree.components; layer 0 does not.
    let ls = m["layers"].as_array().unwrap();
    assert!(ls[0].get("annotations").is_none());
    let comps: Vec<&str> = ls[1..]
        .iter()
        .map(|l| l["annotations"]["ostree.components"].as_str().unwrap())
        .collect();
    assert!(comps.contains(&"busybox"), "{comps:?}");
    assert!(comps.contains(&"hello"), "{comps:?}");
    assert!(
        comps.contains(&"unpackaged"),
        "initramfs goes to the churn bin: {comps:?}"
    );
    assert_eq!(*comps.last().unwrap(), "");
    // Checkout paths: hardlinks to objects, empty files real, setuid and owners kept.
    let all: Vec<&TarEntry> = entries.iter().flatten().collect();
    let find = |p: &str| {
        all.iter()
            .find(|e| e.path == p)
            .copied()
            .unwrap_or_else(|| panic!("no entry {p}"))
    };
    let hello = find("usr/bin/hello");
    assert_eq!(hello.kind, b'1');
    assert!(hello
        .link
        .as_deref()
        .unwrap()
        .starts_with("sysroot/ostree/repo/objects/"));
    assert_eq!(find("usr/bin/hello-again").link, hello.link);
    assert_eq!(find("usr/share/doc/hello/empty").kind, b'0');
    assert_eq!(find("usr/bin/su-like").mode, 0o4755);
    let owned = find("etc/sample.d/owned-by-1000");
    assert_eq!((owned.uid, owned.gid, owned.mode), (1000, 1000, 0o600));
    assert_eq!(
        find("usr/bin/sh")
            .link
            .as_deref()
            .map(|l| l.ends_with(".file")),
        Some(true)
    );
    // No layer names a path twice (containers-storage refuses such layers).
    for (i, es) in entries.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for e in es {
            assert!(
                seen.insert(e.path.as_str()),
                "layer {i} has {} twice",
                e.path
            );
        }
    }
    // Each content object travels with its xattrs link.
    let objs = all.iter().filter(|e| e.path.ends_with(".file")).count();
    let links = all
        .iter()
        .filter(|e| e.path.ends_with(".file-xattrs-link"))
        .count();
    assert_eq!(objs, links);
}

#[test]
fn exports_are_byte_identical_for_gzip_and_zstd() {
    let env = TestEnv::new();
    let (repo, _) = env.repo_with("repo", "sample", SAMPLE).unwrap();
    for comp in ["gzip", "zstd", "none"] {
        let a = env.path().join(format!("a-{comp}"));
        let b = env.path().join(format!("b-{comp}"));
        let da = export(
            &env,
            &repo,
            "sample",
            &format!("oci:{}", a.display()),
            &["--compression", comp],
        );
        let db = export(
            &env,
            &repo,
            "sample",
            &format!("oci:{}", b.display()),
            &["--compression", comp, "--jobs", "1"],
        );
        assert_eq!(da, db, "{comp}: manifest digests differ");
        let m = Layout::open(&a).manifest(None).unwrap();
        let want = match comp {
            "gzip" => "application/vnd.oci.image.layer.v1.tar+gzip",
            "zstd" => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => "application/vnd.oci.image.layer.v1.tar",
        };
        for l in m["layers"].as_array().unwrap() {
            assert_eq!(l["mediaType"], want);
            let d = l["digest"].as_str().unwrap();
            assert_eq!(
                std::fs::read(Layout::open(&a).blob_path(d)).unwrap(),
                std::fs::read(Layout::open(&b).blob_path(d)).unwrap()
            );
        }
    }
}

/// A Debian-style tree: dpkg's database lists which package owns which file.
fn dpkg_tree(version: &str, libfoo: &str) -> String {
    format!(
        r#"
subject "dpkg sample {version}"
meta version={version}
file usr/bin/busybox mode=0755 from=/bin/busybox
link usr/bin/sh target=busybox
link bin target=usr/bin
file usr/bin/alpha mode=0755 content="alpha binary\n"
file usr/share/doc/alpha/copyright content="alpha copyright\n"
file usr/lib/libfoo.so.1 size=70000
file usr/lib/libfoo-data content="{libfoo}\n"
file usr/share/doc/libfoo/changelog content="libfoo {libfoo}\n"
file usr/bin/gamma mode=0755 size=120000
file usr/etc/gamma.conf content="gamma=1\n"
file usr/etc/machine-local content="generated {version}\n"
file usr/lib/sysimage/dpkg/status content="Package: alpha\n"
file usr/lib/sysimage/dpkg/info/alpha.list content="/.\n/usr\n/usr/bin\n/bin/alpha\n/usr/share/doc/alpha/copyright\n"
file usr/lib/sysimage/dpkg/info/libfoo.list content="/usr/lib/libfoo.so.1\n/usr/lib/libfoo-data\n/usr/share/doc/libfoo/changelog\n"
file usr/lib/sysimage/dpkg/info/gamma.list content="/usr/bin/gamma\n/etc/gamma.conf\n"
file usr/lib/sysimage/dpkg/info/busybox.list content="/bin/busybox\n/bin/sh\n"
"#
    )
}

/// Layer index of every checkout path (hardlinks and empty files), with the layer's components.
fn path_layers(entries: &[Vec<TarEntry>]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (i, es) in entries.iter().enumerate() {
        for e in es {
            if !e.path.starts_with("sysroot/") && e.kind != b'5' {
                m.insert(e.path.clone(), i);
            }
        }
    }
    m
}

#[test]
fn dpkg_packages_each_travel_in_one_layer() {
    let env = TestEnv::new();
    let (repo, _) = env.repo_with("repo", "os", &dpkg_tree("1", "v1")).unwrap();
    let out = env.path().join("oci");
    let json = run_stdout(
        env.ostree_container()
            .args(["encapsulate", "--json", "--repo"])
            .arg(&repo)
            .arg("os")
            .arg(format!("oci:{}", out.display())),
    )
    .unwrap();
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["chunking"]["packages"], 4);
    assert!(report["chunking"]["sources"]
        .as_array()
        .unwrap()
        .contains(&Value::from("dpkg")));
    let (m, _, entries) = layers(&Layout::open(&out), None);
    let comps: Vec<String> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["annotations"]["ostree.components"]
                .as_str()
                .unwrap_or("<commit>")
                .to_string()
        })
        .collect();
    let pl = path_layers(&entries);
    let layer_of = |p: &str| comps[pl[p]].clone();
    assert_eq!(layer_of("usr/bin/alpha"), "alpha");
    assert_eq!(layer_of("usr/share/doc/alpha/copyright"), "alpha");
    for p in [
        "usr/lib/libfoo.so.1",
        "usr/lib/libfoo-data",
        "usr/share/doc/libfoo/changelog",
    ] {
        assert_eq!(layer_of(p), "libfoo", "{p}");
    }
    // /etc/gamma.conf in the database is usr/etc/gamma.conf in the commit, etc/ in the tar.
    assert_eq!(layer_of("etc/gamma.conf"), "gamma");
    assert_eq!(layer_of("usr/bin/gamma"), "gamma");
    assert_eq!(layer_of("usr/bin/busybox"), "busybox");
    // Nobody owns these: the churn bin.
    assert_eq!(layer_of("etc/machine-local"), "unpackaged");
    assert_eq!(layer_of("usr/lib/sysimage/dpkg/status"), "unpackaged");
}

#[test]
fn prior_build_keeps_layout_and_an_update_changes_only_its_layers() {
    let env = TestEnv::new();
    let (repo, _) = env.repo_with("repo", "os", &dpkg_tree("1", "v1")).unwrap();
    let out = env.path().join("oci");
    let dest = |t: &str| format!("oci:{}:{t}", out.display());
    export(&env, &repo, "os", &dest("v1"), &["--max-layers", "8"]);
    // v2: libfoo updated, a new package "delta" appears.
    let mut v2 = dpkg_tree("2", "v2");
    v2.push_str("file usr/bin/delta mode=0755 content=\"delta\\n\"\nfile usr/lib/sysimage/dpkg/info/delta.list content=\"/usr/bin/delta\\n\"\n");
    let (repo2, _) = env.repo_with("repo2", "os", &v2).unwrap();
    export(
        &env,
        &repo2,
        "os",
        &dest("v2"),
        &["--max-layers", "8", "--prior-build", &dest("v1")],
    );
    let l = Layout::open(&out);
    let m1 = l.manifest(Some("v1")).unwrap();
    let m2 = l.manifest(Some("v2")).unwrap();
    let l1 = m1["layers"].as_array().unwrap();
    let l2 = m2["layers"].as_array().unwrap();
    assert_eq!(l1.len(), l2.len(), "layer count kept");
    let comp = |l: &Value| {
        l["annotations"]["ostree.components"]
            .as_str()
            .unwrap_or("<commit>")
            .to_string()
    };
    let mut changed = Vec::new();
    for (i, (a, b)) in l1.iter().zip(l2).enumerate() {
        if i > 0 && i + 1 < l1.len() {
            assert_eq!(comp(a), comp(b), "layer {i} keeps its components");
        }
        if a["digest"] != b["digest"] {
            changed.push(comp(b));
        }
    }
    changed.sort();
    // Only the commit layer, libfoo's layer, the churn layer (machine-local changed) and the
    // reserved layer that took "delta" may change.
    let allowed = ["<commit>", "libfoo", "unpackaged", "delta"];
    for c in &changed {
        assert!(
            allowed.contains(&c.as_str()),
            "layer {c} changed: {changed:?}"
        );
    }
    assert!(changed.contains(&"libfoo".to_string()));
    assert_eq!(
        comp(l2.last().unwrap()),
        "delta",
        "new packages go to the reserved layer"
    );
    // Without --prior-build, the same v2 export is still valid but may move things.
    let plain = export(
        &env,
        &repo2,
        "os",
        &dest("v2-fresh"),
        &["--max-layers", "8"],
    );
    assert!(plain.starts_with("sha256:"));
}

#[test]
fn xattr_component_pins_files_and_directories() {
    let env = TestEnv::new();
    let text = r#"
file usr/bin/a content="a\n" xattr.user.component=comp-a
dir usr/share/b xattr.user.component=comp-b
file usr/share/b/one content="1\n"
dir usr/share/b/deeper
file usr/share/b/deeper/two content="2\n"
file usr/share/other content="o\n"
"#;
    let (repo, _) = env.repo_with("repo", "x", text).unwrap();
    let out = env.path().join("oci");
    export(&env, &repo, "x", &format!("oci:{}", out.display()), &[]);
    let (m, _, entries) = layers(&Layout::open(&out), None);
    let comps: Vec<String> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["annotations"]["ostree.components"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let pl = path_layers(&entries);
    assert_eq!(comps[pl["usr/bin/a"]], "comp-a");
    assert_eq!(comps[pl["usr/share/b/one"]], "comp-b");
    assert_eq!(comps[pl["usr/share/b/deeper/two"]], "comp-b");
    assert_eq!(comps[pl["usr/share/other"]], "dir:usr/share");
}

#[test]
fn max_layers_is_respected_and_validated() {
    let env = TestEnv::new();
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(&format!(
            "file usr/share/p{i}/f content=\"{i}\" xattr.user.component=p{i:02}\n"
        ));
    }
    let (repo, _) = env.repo_with("repo", "x", &text).unwrap();
    for n in [4u32, 5, 16] {
        let out = env.path().join(format!("oci-{n}"));
        export(
            &env,
            &repo,
            "x",
            &format!("oci:{}", out.display()),
            &["--max-layers", &n.to_string()],
        );
        let m = Layout::open(&out).manifest(None).unwrap();
        let count = m["layers"].as_array().unwrap().len();
        assert!(count <= n as usize, "--max-layers {n}: {count} layers");
        let comps: usize = m["layers"].as_array().unwrap()[1..]
            .iter()
            .map(|l| {
                l["annotations"]["ostree.components"]
                    .as_str()
                    .unwrap()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .count()
            })
            .sum();
        assert_eq!(comps, 40, "every component placed once");
    }
    let out = env.path().join("oci-3");
    let e = env
        .ostree_container()
        .args(["encapsulate", "--max-layers", "3", "--repo"])
        .arg(&repo)
        .arg("x")
        .arg(format!("oci:{}", out.display()))
        .output()
        .unwrap();
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("at least 4"));
    assert!(!out.exists());
}

#[cfg_attr(
    not(peer_available),
    ignore = "../shared/bench/peer-ostree-ext is missing: the interop test needs the peer"
)]
#[test]
fn peer_imports_our_image_to_the_same_commit() {
    let env = TestEnv::new();
    let peer = ostree_bridge_tests::peer_binary().expect("building the peer (ostree-ext)");
    for (name, text) in [
        ("sample", SAMPLE.to_string()),
        ("dpkg", dpkg_tree("1", "v1")),
    ] {
        let (repo, csum) = env.repo_with(&format!("repo-{name}"), "os", &text).unwrap();
        for comp in ["gzip", "none"] {
            let out = env.path().join(format!("oci-{name}-{comp}"));
            export(
                &env,
                &repo,
                "os",
                &format!("oci:{}:t", out.display()),
                &["--compression", comp],
            );
            let dest = env.path().join(format!("peer-{name}-{comp}"));
            run(
                std::process::Command::new(ostree_bridge_tests::require_tool("ostree"))
                    .arg("init")
                    .arg(format!("--repo={}", dest.display()))
                    .arg("--mode=bare"),
            )
            .unwrap();
            let imported = run_stdout(
                env.command(&peer)
                    .args(["container", "unencapsulate", "--repo"])
                    .arg(&dest)
                    .arg(format!("ostree-unverified-image:oci:{}:t", out.display())),
            )
            .unwrap();
            assert!(
                imported.contains(&csum),
                "{name}/{comp}: peer imported {imported}, want {csum}"
            );
            run(std::process::Command::new("ostree")
                .arg("fsck")
                .arg(format!("--repo={}", dest.display())))
            .unwrap();
        }
    }
}

/// Build two noarch rpms with Debian's rpm tools, install them into a tree, commit it: the rpm
/// database decides the layers.
#[test]
fn rpm_packages_each_travel_in_one_layer() {
    use ostree_bridge_tests::require_tool;
    let env = TestEnv::new();
    let rpmbuild = require_tool("rpmbuild");
    let rpm = require_tool("rpm");
    let top = env.path().join("rpmbuild");
    for p in ["a", "b"] {
        let spec = env.path().join(format!("{p}.spec"));
        std::fs::write(
            &spec,
            format!(
                "Name: rpmt-{p}\nVersion: 1.0\nRelease: 1\nSummary: test {p}\nLicense: MIT\nBuildArch: noarch\n\
                 %description\ntest\n%install\nmkdir -p %{{buildroot}}/usr/share/rpmt-{p} %{{buildroot}}/etc\n\
                 echo {p} > %{{buildroot}}/usr/share/rpmt-{p}/data\necho conf-{p} > %{{buildroot}}/etc/rpmt-{p}.conf\n\
                 %files\n/usr/share/rpmt-{p}/data\n%config /etc/rpmt-{p}.conf\n"
            ),
        )
        .unwrap();
        run(std::process::Command::new(&rpmbuild)
            .args(["-bb", "--quiet", "--define"])
            .arg(format!("_topdir {}", top.display()))
            .arg(&spec))
        .unwrap();
    }
    let root = env.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let rpms: Vec<_> = std::fs::read_dir(top.join("RPMS/noarch"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(rpms.len(), 2);
    run(std::process::Command::new(&rpm)
        .env("HOME", env.path())
        .arg("--root")
        .arg(&root)
        .args([
            "--dbpath",
            "/usr/lib/sysimage/rpm",
            "-i",
            "--nodeps",
            "--noscripts",
            "--nosignature",
        ])
        .args(&rpms))
    .unwrap();
    std::fs::rename(root.join("etc"), root.join("usr/etc")).unwrap();
    std::fs::write(root.join("usr/share/unowned"), "nobody's\n").unwrap();
    let repo = env.path().join("repo");
    run(std::process::Command::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", repo.display()))
        .arg("--mode=bare"))
    .unwrap();
    run(std::process::Command::new("ostree")
        .arg("commit")
        .arg(format!("--repo={}", repo.display()))
        .args(["--branch=rpmos", "-s", "rpm os"])
        .arg(format!("--tree=dir={}", root.display())))
    .unwrap();
    let out = env.path().join("oci");
    let json = run_stdout(
        env.ostree_container()
            .args(["encapsulate", "--json", "--repo"])
            .arg(&repo)
            .arg("rpmos")
            .arg(format!("oci:{}", out.display())),
    )
    .unwrap();
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        report["chunking"]["sources"],
        serde_json::json!(["rpm"]),
        "{report}"
    );
    assert_eq!(report["chunking"]["packages"], 2);
    let (m, _, entries) = layers(&Layout::open(&out), None);
    let comps: Vec<String> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["annotations"]["ostree.components"]
                .as_str()
                .unwrap_or("<commit>")
                .to_string()
        })
        .collect();
    let pl = path_layers(&entries);
    assert_eq!(comps[pl["usr/share/rpmt-a/data"]], "rpmt-a");
    assert_eq!(comps[pl["etc/rpmt-a.conf"]], "rpmt-a");
    assert_eq!(comps[pl["usr/share/rpmt-b/data"]], "rpmt-b");
    assert_eq!(comps[pl["etc/rpmt-b.conf"]], "rpmt-b");
    assert_eq!(comps[pl["usr/share/unowned"]], "unpackaged");
}

#[test]
fn contentmeta_maps_objects_to_named_layers() {
    let env = TestEnv::new();
    let text = "file usr/bin/one content=\"1\\n\"\nfile usr/bin/two content=\"2\\n\"\nfile usr/bin/three content=\"3\\n\"\n";
    let (repo, _) = env.repo_with("repo", "x", text).unwrap();
    // Content checksums by path, from ostree itself.
    let ls = run_stdout(
        std::process::Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["ls", "-R", "-C", "x", "/usr/bin"]),
    )
    .unwrap();
    let csum = |name: &str| {
        ls.lines()
            .find(|l| l.ends_with(&format!("/usr/bin/{name}")))
            .unwrap()
            .split_whitespace()
            .nth(4)
            .unwrap()
            .to_string()
    };
    let cm = serde_json::json!({
        "version": 1,
        "created": "2024-01-02T03:04:05Z",
        "labels": {"from-contentmeta": "yes"},
        "layers": {"l1": "first layer", "l2": "second layer"},
        "mapping": {csum("one"): "l1", csum("two"): "l2", csum("three"): "l2"},
    });
    let cmf = env.path().join("cm.json");
    std::fs::write(&cmf, cm.to_string()).unwrap();
    let out = env.path().join("oci");
    export(
        &env,
        &repo,
        "x",
        &format!("oci:{}", out.display()),
        &["--contentmeta", cmf.to_str().unwrap()],
    );
    let (m, cfg, entries) = layers(&Layout::open(&out), None);
    assert_eq!(cfg["created"], "2024-01-02T03:04:05Z");
    assert_eq!(cfg["config"]["Labels"]["from-contentmeta"], "yes");
    let comps: Vec<String> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["annotations"]["ostree.components"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let pl = path_layers(&entries);
    assert_eq!(comps[pl["usr/bin/one"]], "first layer");
    assert_eq!(comps[pl["usr/bin/two"]], "second layer");
    assert_eq!(pl["usr/bin/two"], pl["usr/bin/three"]);
}

#[test]
fn cmd_config_and_copymeta_reach_the_config() {
    let env = TestEnv::new();
    let (repo, _) = env
        .repo_with("repo", "sample", &format!("{SAMPLE}\nmeta vendor=acme\n"))
        .unwrap();
    let base = env.path().join("config.json");
    std::fs::write(
        &base,
        r#"{"Env": ["PATH=/usr/bin"], "WorkingDir": "/usr", "Labels": {"base": "1"}}"#,
    )
    .unwrap();
    let out = env.path().join("oci");
    export(
        &env,
        &repo,
        "sample",
        &format!("oci:{}", out.display()),
        &[
            "--config",
            base.to_str().unwrap(),
            "--cmd",
            "/usr/bin/sh",
            "--cmd",
            "-c",
            "--cmd",
            "hello",
            "--copymeta",
            "vendor",
            "--copymeta-opt",
            "absent",
        ],
    );
    let l = Layout::open(&out);
    let cfg = l.config(&l.manifest(None).unwrap()).unwrap();
    let c = &cfg["config"];
    assert_eq!(c["Cmd"], serde_json::json!(["/usr/bin/sh", "-c", "hello"]));
    assert_eq!(c["Env"], serde_json::json!(["PATH=/usr/bin"]));
    assert_eq!(c["WorkingDir"], "/usr");
    assert_eq!(c["Labels"]["base"], "1");
    assert_eq!(c["Labels"]["vendor"], "acme");
    assert!(c["Labels"].get("absent").is_none());
    assert_eq!(cfg["os"], "linux");
    assert!(cfg["architecture"].as_str().is_some_and(|a| !a.is_empty()));
}

#[test]
fn make_install_places_the_plugin_where_ostree_looks() {
    let env = TestEnv::new();
    let dest = env.path().join("destdir");
    // Install the already-built binary layout the Makefile produces, without rebuilding.
    let top = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = run_stdout(
        std::process::Command::new("make")
            .arg("-n")
            .arg("-C")
            .arg(&top)
            .arg("install")
            .arg(format!("DESTDIR={}", dest.display())),
    )
    .unwrap();
    assert!(out.contains("/usr/libexec/libostree/ext"), "{out}");
    assert!(
        out.contains("ln -sf ../../../bin/ostree-container"),
        "{out}"
    );
    // The relative link resolves from the plugin directory to the installed binary.
    let ext = dest.join("usr/libexec/libostree/ext");
    std::fs::create_dir_all(&ext).unwrap();
    std::fs::create_dir_all(dest.join("usr/bin")).unwrap();
    std::fs::write(dest.join("usr/bin/ostree-container"), "x").unwrap();
    std::os::unix::fs::symlink(
        "../../../bin/ostree-container",
        ext.join("ostree-container"),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(ext.join("ostree-container")).unwrap(),
        "x"
    );
}

/// ostree-ext 0.15.3 writes `var/tmp` twice when the commit has it, and containers-storage then
/// refuses the layer ("duplicates of file paths not supported"); we write it once.
#[test]
fn a_commit_with_var_tmp_has_it_once() {
    let env = TestEnv::new();
    let (repo, _) = env
        .repo_with(
            "repo",
            "x",
            "dir var/tmp mode=01777\nfile usr/share/a content=\"a\\n\"\n",
        )
        .unwrap();
    let out = env.path().join("oci");
    export(&env, &repo, "x", &format!("oci:{}", out.display()), &[]);
    let (_, _, entries) = layers(&Layout::open(&out), None);
    let n = entries[0]
        .iter()
        .filter(|e| e.path.trim_end_matches('/') == "var/tmp")
        .count();
    assert_eq!(n, 1);
    assert_eq!(
        entries[0]
            .iter()
            .find(|e| e.path.trim_end_matches('/') == "var/tmp")
            .unwrap()
            .mode,
        0o1777
    );
    export(&env, &repo, "x", &env.cstor_ref("localhost/vartmp:1"), &[]);
}
