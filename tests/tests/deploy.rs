//! `image deploy` and `status` on throwaway sysroots, with real podman-built images carrying a
//! fake kernel.

use ostree_bridge_tests::{new_sysroot, run_stdout, TestEnv, SAMPLE};
use serde_json::Value;
use std::path::Path;

fn deploy(env: &TestEnv, sysroot: &Path, imgref: &str, extra: &[&str]) -> Value {
    let out = run_stdout(
        env.ostree_container()
            .args([
                "image",
                "deploy",
                "--json",
                "--stateroot",
                "myos",
                "--sysroot",
            ])
            .arg(sysroot)
            .args(["--imgref", imgref])
            .args(extra),
    )
    .unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn status(env: &TestEnv, sysroot: &Path) -> Value {
    let out = run_stdout(
        env.ostree_container()
            .args(["status", "--json", "--sysroot"])
            .arg(sysroot),
    )
    .unwrap();
    serde_json::from_str(&out).unwrap()
}

#[test]
fn deploys_a_derived_image_with_kargs_origin_and_etc() {
    let env = TestEnv::new();
    let (src, base) = env.repo_with("src", "sample", SAMPLE).unwrap();
    env.encapsulate(&src, "sample", &env.cstor_ref("localhost/base:1"), &[])
        .unwrap();
    env.podman_build("localhost/myos:1", "FROM localhost/base:1\nRUN echo 'from the image' > /etc/image-config && echo 'kargs = [\"derived.karg\"]' > /usr/lib/bootc/kargs.d/20-derived.toml\n").unwrap();
    let sysroot = new_sysroot(env.path(), "sysroot", "myos").unwrap();
    let imgref = "ostree-unverified-image:containers-storage:localhost/myos:1";
    let r = deploy(&env, &sysroot, imgref, &["--karg", "user.karg=1"]);
    assert_eq!(r["staged"], false);
    assert_eq!(r["pull"]["base_commit"], base.as_str());
    let kargs: Vec<&str> = r["kargs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        kargs,
        [
            "console=ttyS0,115200",
            "sample.karg=1",
            "derived.karg",
            "user.karg=1"
        ]
    );
    // Boot loader entry with the kargs and the fake kernel.
    let entries = sysroot.join("boot/loader/entries");
    let conf: Vec<_> = std::fs::read_dir(&entries)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(conf.len(), 1, "{conf:?}");
    let text = std::fs::read_to_string(&conf[0]).unwrap();
    assert!(
        text.contains(
            "options console=ttyS0,115200 sample.karg=1 derived.karg user.karg=1 ostree="
        ),
        "{text}"
    );
    assert!(text.contains("vmlinuz-6.1.0-sample"), "{text}");
    // Origin file and the deployment's /etc from the image's /usr/etc.
    let dep = Path::new(r["deployment_path"].as_str().unwrap());
    let origin = std::fs::read_to_string(dep.with_extension(format!(
        "{}.origin",
        dep.extension().unwrap().to_string_lossy()
    )))
    .unwrap();
    assert_eq!(
        origin,
        format!("[origin]\ncontainer-image-reference={imgref}\n")
    );
    assert_eq!(
        std::fs::read_to_string(dep.join("etc/image-config")).unwrap(),
        "from the image\n"
    );
    assert_eq!(
        std::fs::read_to_string(dep.join("etc/os-release")).unwrap(),
        "NAME=Sample\nID=sample\n"
    );

    // Status: one deployment, the default, from the image.
    let s = status(&env, &sysroot);
    assert_eq!(s["schema_version"], 1);
    let d = &s["deployments"][0];
    assert_eq!(d["image"], imgref);
    assert_eq!(d["default"], true);
    assert_eq!(d["version"], "1.0");
    assert!(d["manifest_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));

    // A second deploy: the first becomes the rollback, kargs carry over.
    let r2 = deploy(&env, &sysroot, imgref, &["--karg", "second=1"]);
    let k2: Vec<&str> = r2["kargs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(
        k2.contains(&"user.karg=1") && k2.contains(&"second=1"),
        "{k2:?}"
    );
    let s = status(&env, &sysroot);
    assert_eq!(s["deployments"].as_array().unwrap().len(), 2);
    assert_eq!(s["deployments"][1]["rollback"], true);
}

#[test]
fn refuses_images_that_cannot_boot() {
    let env = TestEnv::new();
    let sysroot = new_sysroot(env.path(), "sysroot", "myos").unwrap();
    let fail = |imgref: &str, extra: &[&str], want: &str| {
        let o = env
            .ostree_container()
            .args(["image", "deploy", "--stateroot", "myos", "--sysroot"])
            .arg(&sysroot)
            .args(["--imgref", imgref])
            .args(extra)
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{imgref} deployed");
        assert!(e.contains(want), "{e}");
    };
    // No kernel.
    let (src, _) = env
        .repo_with("nokernel", "x", "bootable\nfile usr/bin/x content=\"x\"\n")
        .unwrap();
    let oci = env.path().join("nokernel-oci");
    env.encapsulate(&src, "x", &format!("oci:{}", oci.display()), &[])
        .unwrap();
    fail(&format!("oci:{}", oci.display()), &[], "no kernel");
    // Not labelled bootable.
    let (src, _) = env
        .repo_with("nolabel", "x", "kernel 6.1\nfile usr/bin/x content=\"x\"\n")
        .unwrap();
    let oci = env.path().join("nolabel-oci");
    env.encapsulate(&src, "x", &format!("oci:{}", oci.display()), &[])
        .unwrap();
    fail(&format!("oci:{}", oci.display()), &[], "not bootable");
    // Missing stateroot and sysroot.
    let o = env
        .ostree_container()
        .args(["image", "deploy", "--stateroot", "nope", "--sysroot"])
        .arg(&sysroot)
        .arg("--imgref")
        .arg(format!("oci:{}", oci.display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("stateroot \"nope\" does not exist"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = env
        .ostree_container()
        .args([
            "image",
            "deploy",
            "--stateroot",
            "myos",
            "--sysroot",
            "/nonexistent",
            "--imgref",
            "oci:/x",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an ostree sysroot"));
    // Nothing was deployed.
    let s = status(&env, &sysroot);
    assert_eq!(s["deployments"].as_array().unwrap().len(), 0);
}

fn upgrade(env: &TestEnv, sysroot: &Path, extra: &[&str]) -> Value {
    let out = run_stdout(
        env.ostree_container()
            .args(["upgrade", "--json", "--sysroot"])
            .arg(sysroot)
            .args(extra),
    )
    .unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn upgrade_follows_a_rebuilt_tag_keeps_local_etc_and_says_no_update() {
    let env = TestEnv::new();
    let (src, _) = env.repo_with("src", "sample", SAMPLE).unwrap();
    env.encapsulate(&src, "sample", &env.cstor_ref("localhost/base:1"), &[])
        .unwrap();
    env.podman_build(
        "localhost/myos:latest",
        "FROM localhost/base:1\nRUN echo v1 > /etc/image-version && echo 'kargs = [\"old.karg\"]' > /usr/lib/bootc/kargs.d/30-v.toml\n",
    )
    .unwrap();
    let sysroot = new_sysroot(env.path(), "sysroot", "myos").unwrap();
    let imgref = "ostree-unverified-image:containers-storage:localhost/myos:latest";
    let d1 = deploy(&env, &sysroot, imgref, &["--karg", "user.karg=1"]);
    assert!(d1["kargs"].to_string().contains("old.karg"), "{d1}");
    // Nothing changed: no update, nothing written.
    let r = upgrade(&env, &sysroot, &[]);
    assert_eq!(r["update_available"], false, "{r}");
    assert_eq!(r["action"], "none");
    assert_eq!(
        status(&env, &sysroot)["deployments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A local change to the deployment's /etc, then a rebuild under the same tag.
    let dep1 = Path::new(d1["deployment_path"].as_str().unwrap()).to_path_buf();
    std::fs::write(dep1.join("etc/local.conf"), "mine\n").unwrap();
    std::fs::write(dep1.join("etc/image-version"), "locally pinned\n").unwrap();
    env.podman_build(
        "localhost/myos:latest",
        "FROM localhost/base:1\nRUN echo v2 > /etc/image-version && echo new > /etc/added-in-v2 && echo 'kargs = [\"new.karg\"]' > /usr/lib/bootc/kargs.d/30-v.toml\n",
    )
    .unwrap();
    let check = upgrade(&env, &sysroot, &["--check"]);
    assert_eq!(check["update_available"], true);
    assert_eq!(check["action"], "checked");
    assert_eq!(
        status(&env, &sysroot)["deployments"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "--check writes nothing"
    );
    let r = upgrade(&env, &sysroot, &[]);
    assert_eq!(r["action"], "deployed", "{r}");
    let dep2 = Path::new(r["deployed"]["deployment_path"].as_str().unwrap()).to_path_buf();
    assert_eq!(
        std::fs::read_to_string(dep2.join("etc/local.conf")).unwrap(),
        "mine\n",
        "local /etc change kept"
    );
    assert_eq!(
        std::fs::read_to_string(dep2.join("etc/image-version")).unwrap(),
        "locally pinned\n",
        "a conflict keeps the local file"
    );
    let etc = &r["deployed"]["etc"];
    assert_eq!(
        etc["kept_local"],
        serde_json::json!(["local.conf"]),
        "{etc}"
    );
    assert_eq!(
        etc["conflicts"],
        serde_json::json!(["image-version"]),
        "{etc}"
    );
    assert!(
        etc["from_image"]
            .as_array()
            .unwrap()
            .contains(&Value::from("added-in-v2")),
        "{etc}"
    );
    assert_eq!(
        std::fs::read_to_string(dep2.join("etc/added-in-v2")).unwrap(),
        "new\n"
    );
    let s = status(&env, &sysroot);
    assert_eq!(s["deployments"].as_array().unwrap().len(), 2);
    assert_eq!(
        s["deployments"][0]["manifest_digest"],
        r["available_digest"]
    );
    // Kargs: the image's difference applied, the user's kept, each source named.
    let k: Vec<&str> = r["deployed"]["kargs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(
        k.contains(&"new.karg") && k.contains(&"user.karg=1") && !k.contains(&"old.karg"),
        "{k:?}"
    );
    let src: Vec<(String, String)> = s["deployments"][0]["karg_sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["karg"].as_str().unwrap().to_string(),
                x["source"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        src.contains(&("new.karg".into(), "image".into())),
        "{src:?}"
    );
    assert!(
        src.contains(&("user.karg=1".into(), "local".into())),
        "{src:?}"
    );
    // And again: no update.
    assert_eq!(upgrade(&env, &sysroot, &[])["update_available"], false);
}

#[test]
fn rollback_pin_and_switch() {
    let env = TestEnv::new();
    let (src, _) = env.repo_with("src", "sample", SAMPLE).unwrap();
    let a = env.path().join("a");
    let b = env.path().join("b");
    env.encapsulate(&src, "sample", &format!("oci:{}", a.display()), &[])
        .unwrap();
    env.encapsulate(
        &src,
        "sample",
        &format!("oci:{}", b.display()),
        &["--label", "flavour=b"],
    )
    .unwrap();
    let sysroot = new_sysroot(env.path(), "sysroot", "myos").unwrap();
    let ia = format!("ostree-unverified-image:oci:{}", a.display());
    let ib = format!("ostree-unverified-image:oci:{}", b.display());
    let oc = |args: &[&str]| {
        let mut c = env.ostree_container();
        c.args(args).arg("--sysroot").arg(&sysroot);
        c.output().unwrap()
    };
    // No rollback with one deployment.
    deploy(&env, &sysroot, &ia, &[]);
    let o = oc(&["rollback"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no rollback deployment"));
    // switch to b: b is the default, a the rollback.
    let o = oc(&["switch", &ib]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = status(&env, &sysroot);
    assert_eq!(s["deployments"][0]["image"], ib.as_str());
    assert_eq!(s["deployments"][1]["image"], ia.as_str());
    // rollback: a is the default again.
    assert!(oc(&["rollback"]).status.success());
    let s = status(&env, &sysroot);
    assert_eq!(s["deployments"][0]["image"], ia.as_str());
    assert_eq!(s["deployments"][0]["default"], true);
    assert_eq!(s["deployments"][1]["image"], ib.as_str());
    // pin 1, unpin 1; an index out of range is an error.
    assert!(oc(&["pin", "1"]).status.success());
    assert_eq!(status(&env, &sysroot)["deployments"][1]["pinned"], true);
    assert!(oc(&["unpin", "1"]).status.success());
    assert_eq!(status(&env, &sysroot)["deployments"][1]["pinned"], false);
    let o = oc(&["pin", "7"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no deployment 7"));
}

/// A small bootable tree, plus `extra` fixture lines.
fn small_os(extra: &str) -> String {
    format!("bootable\nmeta version=2\nkernel 6.1.0-small\nfile usr/bin/tool content=\"tool\\n\"\nfile usr/etc/os-release content=\"ID=small\\n\"\n{extra}")
}

#[test]
fn a_deploy_that_would_not_fit_changes_nothing() {
    let env = TestEnv::new();
    let fs = env.path().join("small");
    std::fs::create_dir_all(&fs).unwrap();
    ostree_bridge_tests::run(
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=40m", "tmpfs"])
            .arg(&fs),
    )
    .expect("mounting a tmpfs (needs root)");
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            ostree_bridge_tests::unlock_deployments(&self.0);
            std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status()
                .ok();
        }
    }
    let _u = Umount(fs.clone());
    let sysroot = new_sysroot(&fs, "sysroot", "myos").unwrap();
    let (src, _) = env.repo_with("src", "x", &small_os("")).unwrap();
    let (big, _) = env
        .repo_with("big", "x", &small_os("file usr/share/big size=30000000\n"))
        .unwrap();
    let a = env.path().join("a");
    let b = env.path().join("b");
    env.encapsulate(
        &src,
        "x",
        &format!("oci:{}", a.display()),
        &["--compression", "none"],
    )
    .unwrap();
    env.encapsulate(
        &big,
        "x",
        &format!("oci:{}", b.display()),
        &["--compression", "none"],
    )
    .unwrap();
    deploy(&env, &sysroot, &format!("oci:{}", a.display()), &[]);
    let before = status(&env, &sysroot);
    let o = env
        .ostree_container()
        .args(["image", "deploy", "--stateroot", "myos", "--sysroot"])
        .arg(&sysroot)
        .arg("--imgref")
        .arg(format!("oci:{}", b.display()))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        e.contains("not enough space") && e.contains("nothing was changed"),
        "{e}"
    );
    assert_eq!(
        status(&env, &sysroot),
        before,
        "the previous default is untouched"
    );
    let refs = run_stdout(
        std::process::Command::new("ostree")
            .arg("refs")
            .arg(format!("--repo={}", sysroot.join("ostree/repo").display())),
    )
    .unwrap();
    assert!(
        !refs.contains(&b.display().to_string().replace('/', "_2F_")),
        "{refs}"
    );
}

#[test]
fn killed_deploys_leave_the_previous_default_intact() {
    let env = TestEnv::new();
    let sysroot = new_sysroot(env.path(), "sysroot", "myos").unwrap();
    let (src, _) = env.repo_with("src", "x", &small_os("")).unwrap();
    let mut text = small_os("");
    for i in 0..20 {
        text.push_str(&format!(
            "file usr/share/data/f{i} size=400000 xattr.user.component=c{i}\n"
        ));
    }
    let (src2, _) = env.repo_with("src2", "x", &text).unwrap();
    let a = env.path().join("a");
    let b = env.path().join("b");
    env.encapsulate(&src, "x", &format!("oci:{}", a.display()), &[])
        .unwrap();
    env.encapsulate(&src2, "x", &format!("oci:{}", b.display()), &[])
        .unwrap();
    let ia = format!("oci:{}", a.display());
    let ib = format!("oci:{}", b.display());
    deploy(&env, &sysroot, &ia, &[]);
    let a_commit = status(&env, &sysroot)["deployments"][0]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    // How long an uninterrupted deploy of b takes, to spread the kills over it.
    let t0 = std::time::Instant::now();
    let mut probe = new_sysroot(env.path(), "probe", "myos").unwrap();
    deploy(&env, &probe, &ib, &[]);
    let span = t0.elapsed().as_millis().max(50) as u64;
    let b_commit = status(&env, &probe)["deployments"][0]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    ostree_bridge_tests::unlock_deployments(env.path());
    std::fs::remove_dir_all(&probe).ok();
    probe.clear();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut kills = 0;
    for _ in 0..10 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = seed % span;
        let mut child = env
            .ostree_container()
            .args(["image", "deploy", "--stateroot", "myos", "--sysroot"])
            .arg(&sysroot)
            .args(["--imgref", &ib])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        // ns.sh execs unshare which execs sh which execs the tool: one process, one pid.
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        let s = status(&env, &sysroot);
        let default = s["deployments"][0]["commit"].as_str().unwrap().to_string();
        // Either the deploy finished (b is the default) or the previous default still is.
        assert!(
            default == a_commit || default == b_commit,
            "default after a kill: {s}"
        );
        assert_eq!(s["deployments"][0]["default"], true);
        ostree_bridge_tests::run(
            std::process::Command::new("ostree")
                .arg("fsck")
                .arg(format!("--repo={}", sysroot.join("ostree/repo").display())),
        )
        .unwrap();
    }
    eprintln!("killed {kills} of 10 deploys");
    // A later deploy succeeds.
    deploy(&env, &sysroot, &ib, &[]);
    assert_eq!(
        status(&env, &sysroot)["deployments"][0]["commit"],
        b_commit.as_str()
    );
}

#[test]
fn prune_images_keeps_what_deployments_use() {
    let env = TestEnv::new();
    let sysroot = new_sysroot(env.path(), "sysroot", "myos").unwrap();
    let mut imgs = Vec::new();
    for (i, extra) in [
        "",
        "file usr/share/b content=\"b\"\n",
        "file usr/share/c content=\"c\"\n",
    ]
    .iter()
    .enumerate()
    {
        let (src, _) = env
            .repo_with(&format!("src{i}"), "x", &small_os(extra))
            .unwrap();
        let o = env.path().join(format!("img{i}"));
        env.encapsulate(&src, "x", &format!("oci:{}", o.display()), &[])
            .unwrap();
        imgs.push(format!("oci:{}", o.display()));
    }
    deploy(&env, &sysroot, &imgs[0], &[]);
    deploy(&env, &sysroot, &imgs[1], &[]);
    // Image 2 only pulled, not deployed.
    run_stdout(
        env.ostree_container()
            .args(["image", "pull", "-q"])
            .arg(sysroot.join("ostree/repo"))
            .arg(&imgs[2]),
    )
    .unwrap();
    let prune = |extra: &[&str]| -> Value {
        let out = run_stdout(
            env.ostree_container()
                .args(["image", "prune-images", "--json", "--sysroot"])
                .arg(&sysroot)
                .args(extra),
        )
        .unwrap();
        serde_json::from_str(&out).unwrap()
    };
    let dry = prune(&["--dry-run"]);
    assert_eq!(dry["removed"].as_array().unwrap().len(), 1, "{dry}");
    assert!(
        dry["removed"][0].as_str().unwrap().contains("img2"),
        "{dry}"
    );
    assert_eq!(dry["kept"].as_array().unwrap().len(), 2);
    let list = |repo: &Path| {
        run_stdout(
            env.ostree_container()
                .args(["image", "list", "--json", "--repo"])
                .arg(repo),
        )
        .unwrap()
    };
    assert_eq!(
        serde_json::from_str::<Value>(&list(&sysroot.join("ostree/repo")))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3,
        "dry run removes nothing"
    );
    let r = prune(&[]);
    assert_eq!(r["removed"], dry["removed"]);
    assert_eq!(
        serde_json::from_str::<Value>(&list(&sysroot.join("ostree/repo")))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Both deployments are intact and the repo is consistent.
    assert_eq!(
        status(&env, &sysroot)["deployments"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    ostree_bridge_tests::run(
        std::process::Command::new("ostree")
            .arg("fsck")
            .arg(format!("--repo={}", sysroot.join("ostree/repo").display())),
    )
    .unwrap();
    assert_eq!(prune(&[])["removed"].as_array().unwrap().len(), 0);
}

#[test]
fn a_locked_sysroot_is_refused_and_left_alone() {
    let env = TestEnv::new();
    let sysroot = new_sysroot(env.path(), "sysroot", "myos").unwrap();
    let (src, _) = env.repo_with("src", "x", &small_os("")).unwrap();
    let o = env.path().join("img");
    env.encapsulate(&src, "x", &format!("oci:{}", o.display()), &[])
        .unwrap();
    // Another process holds ostree's sysroot lock (as an upgrade in progress would).
    let lock = sysroot.join("ostree/lock");
    // libostree takes an fcntl (OFD) lock, which flock(1) would not conflict with.
    let mut holder = std::process::Command::new(ostree_bridge_tests::require_tool("python3"))
        .args(["-c", "import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)"])
        .arg(&lock)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it holds the lock (a loaded machine can take seconds to start python).
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let out = env
        .ostree_container()
        .args(["image", "deploy", "--stateroot", "myos", "--sysroot"])
        .arg(&sysroot)
        .arg("--imgref")
        .arg(format!("oci:{}", o.display()))
        .output()
        .unwrap();
    holder.kill().ok();
    holder.wait().ok();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(e.contains("locked by another process"), "{e}");
    assert_eq!(
        status(&env, &sysroot)["deployments"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Released: the deploy goes through.
    deploy(&env, &sysroot, &format!("oci:{}", o.display()), &[]);
}
