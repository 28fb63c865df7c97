//! Export to every transport through the real tools: containers-storage (then `podman run` and
//! `podman build FROM` it), oci-archive, docker-archive, dir, a registry, and `ostree container`.

use ostree_bridge_tests::registry::Registry;
use ostree_bridge_tests::{require_tool, run, run_stdout, workspace_bin, TestEnv, SAMPLE};
use serde_json::Value;

fn encapsulate(env: &TestEnv, repo: &std::path::Path, dest: &str, extra: &[&str]) -> String {
    let mut c = env.ostree_container();
    c.args(["encapsulate", "--repo"])
        .arg(repo)
        .arg("sample")
        .arg(dest)
        .args(extra);
    run_stdout(&mut c).unwrap().trim().to_string()
}

fn inspect(env: &TestEnv, imgref: &str, extra: &[&str]) -> Value {
    let out = run_stdout(env.podman.skopeo().arg("inspect").args(extra).arg(imgref)).unwrap();
    serde_json::from_str(&out).unwrap()
}

#[test]
fn containers_storage_then_podman_run_and_build() {
    let env = TestEnv::new();
    let (repo, csum) = env.repo_with("repo", "sample", SAMPLE).unwrap();
    // The explicit store syntax, and the store the environment names (CONTAINERS_STORAGE_CONF).
    let json = run_stdout(
        env.ostree_container()
            .args(["encapsulate", "--json", "--compression", "gzip", "--repo"])
            .arg(&repo)
            .arg("sample")
            .arg(env.cstor_ref("localhost/sample:1")),
    )
    .unwrap();
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        report["compression"], "none",
        "containers-storage gets uncompressed layers"
    );
    assert!(report["warnings"].to_string().contains("not applied"));
    encapsulate(&env, &repo, "containers-storage:localhost/sample:env", &[]);

    let images =
        run_stdout(
            env.podman
                .podman()
                .args(["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        )
        .unwrap();
    assert!(
        images.lines().any(|l| l == "localhost/sample:1"),
        "{images}"
    );
    assert!(
        images.lines().any(|l| l == "localhost/sample:env"),
        "{images}"
    );
    let label = run_stdout(env.podman.podman().args([
        "image",
        "inspect",
        "--format",
        "{{index .Labels \"ostree.commit\"}}",
        "localhost/sample:1",
    ]))
    .unwrap();
    assert_eq!(label.trim(), csum);

    let out = run_stdout(env.podman.podman().args([
        "run", "--rm", "localhost/sample:1", "/usr/bin/sh", "-c",
        "hello; cat /etc/os-release; ls -ln /usr/bin/su-like /etc/sample.d/owned-by-1000; test -d /var/tmp && echo vartmp",
    ]))
    .unwrap();
    assert!(out.contains("hello from the sample OS"), "{out}");
    assert!(out.contains("NAME=Sample"), "{out}");
    assert!(out.contains("-rwsr-xr-x"), "setuid kept: {out}");
    assert!(out.contains("1000"), "owner kept: {out}");
    assert!(out.contains("vartmp"), "{out}");

    env.podman_build(
        "localhost/derived:1",
        "FROM localhost/sample:1\n\
         RUN echo derived > /usr/share/derived && ln /usr/share/derived /usr/share/derived-link \
         && echo appended >> /usr/lib/os-release && rm -rf /usr/share/doc/hello && echo x > /etc/added\n",
    )
    .unwrap();
    let out = run_stdout(env.podman.podman().args([
        "run", "--rm", "localhost/derived:1", "/usr/bin/sh", "-c",
        "cat /usr/share/derived-link /etc/added; tail -n1 /usr/lib/os-release; test -e /usr/share/doc/hello || echo gone",
    ]))
    .unwrap();
    assert_eq!(out, "derived\nx\nappended\ngone\n");
}

#[test]
fn archives_and_dir() {
    let env = TestEnv::new();
    let (repo, csum) = env.repo_with("repo", "sample", SAMPLE).unwrap();
    let oci_digest = encapsulate(
        &env,
        &repo,
        &format!("oci:{}", env.path().join("oci").display()),
        &[],
    );
    let archive = env.path().join("img.oci.tar");
    let d = encapsulate(
        &env,
        &repo,
        &format!("oci-archive:{}:v1", archive.display()),
        &[],
    );
    assert_eq!(d, oci_digest, "oci-archive keeps the manifest");
    let docker = env.path().join("img.docker.tar");
    encapsulate(
        &env,
        &repo,
        &format!("docker-archive:{}", docker.display()),
        &[],
    );
    let dir = env.path().join("img.dir");
    encapsulate(&env, &repo, &format!("dir:{}", dir.display()), &[]);
    for r in [
        format!("oci-archive:{}:v1", archive.display()),
        format!("docker-archive:{}", docker.display()),
        format!("dir:{}", dir.display()),
    ] {
        let v = inspect(&env, &r, &[]);
        assert_eq!(v["Labels"]["ostree.commit"], csum.as_str(), "{r}");
        assert!(v["Layers"].as_array().unwrap().len() >= 4, "{r}");
    }
    // Re-export over existing destinations replaces them whole.
    encapsulate(
        &env,
        &repo,
        &format!("dir:{}", dir.display()),
        &["--label", "again=1"],
    );
    assert_eq!(
        inspect(&env, &format!("dir:{}", dir.display()), &[])["Labels"]["again"],
        "1"
    );
    encapsulate(
        &env,
        &repo,
        &format!("oci-archive:{}:v1", archive.display()),
        &["--label", "again=2"],
    );
    assert_eq!(
        inspect(&env, &format!("oci-archive:{}:v1", archive.display()), &[])["Labels"]["again"],
        "2"
    );
    // Nothing temporary is left beside them.
    let left: Vec<String> = std::fs::read_dir(env.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn registry_push() {
    let env = TestEnv::new();
    let (repo, csum) = env.repo_with("repo", "sample", SAMPLE).unwrap();
    let reg = Registry::start(&env.path().join("registry")).unwrap();
    let r = format!("docker://{}/os/sample:1", reg.addr);
    for comp in ["gzip", "zstd"] {
        let d = encapsulate(
            &env,
            &repo,
            &r,
            &["--dest-tls-verify=false", "--compression", comp],
        );
        let v = inspect(&env, &r, &["--tls-verify=false"]);
        assert_eq!(v["Labels"]["ostree.commit"], csum.as_str());
        assert_eq!(
            v["Digest"],
            d.as_str(),
            "{comp}: reported digest is the registry's"
        );
        let raw = run_stdout(
            env.podman
                .skopeo()
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(&r),
        )
        .unwrap();
        assert!(raw.contains(&format!("tar+{comp}")), "{comp}: {raw}");
    }
    // podman pulls it back (registries.conf marks the registry insecure).
    env.podman
        .write_registries(std::slice::from_ref(&reg.addr))
        .unwrap();
    run(env
        .podman
        .podman()
        .args(["pull", "-q"])
        .arg(format!("{}/os/sample:1", reg.addr)))
    .unwrap();
}

#[test]
fn ostree_container_subcommand_runs_the_plugin() {
    let env = TestEnv::new();
    let (repo, csum) = env.repo_with("repo", "sample", SAMPLE).unwrap();
    require_tool("ostree");
    let bin = workspace_bin("ostree-container");
    let out = env.path().join("oci");
    // In a private mount namespace, /usr/libexec/libostree/ext/ostree-container is our binary:
    // ostree runs it as `ostree-container container encapsulate ...`.
    let script = format!(
        "mount -t tmpfs tmpfs /usr/libexec && mkdir -p /usr/libexec/libostree/ext && \
         ln -s {} /usr/libexec/libostree/ext/ostree-container && \
         ostree container encapsulate --repo={} sample oci:{}",
        bin.display(),
        repo.display(),
        out.display()
    );
    let d = run_stdout(env.command("/bin/sh").args(["-c", &script])).unwrap();
    assert!(d.trim().starts_with("sha256:"), "{d}");
    let m = ostree_bridge_tests::oci::Layout::open(&out);
    let cfg = m.config(&m.manifest(None).unwrap()).unwrap();
    assert_eq!(cfg["config"]["Labels"]["ostree.commit"], csum.as_str());
}
