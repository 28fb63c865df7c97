//! demo: the main job end to end on the built-in sample OS, in a private container world
//! (nothing touches the host's podman stores). Run by `scripts/demo.sh`.
//!
//! sample commit ─▶ encapsulate ─▶ containers-storage ─▶ podman run ─▶ podman build FROM ─▶ run
//!   ─▶ image pull (derived image ─▶ one merged ostree commit) ─▶ image deploy ─▶ status
use anyhow::{Context, Result};
use ostree_bridge_tests::{run_stdout, TestEnv, SAMPLE};

fn step(n: u32, what: &str) {
    println!("\n== {n}. {what}");
}

fn main() {
    if let Err(e) = demo() {
        eprintln!("demo failed: {e:#}");
        std::process::exit(1);
    }
}

fn demo() -> Result<()> {
    let env = TestEnv::new();
    println!("Private world (temporary): {}", env.path().display());

    step(
        1,
        "build the sample OS commit (busybox shell, fake kernel, /usr/etc, hardlinks, xattrs)",
    );
    let (repo, csum) = env.repo_with("repo", "sample/os", SAMPLE)?;
    println!("ostree commit {csum} in {}", repo.display());

    step(
        2,
        "export it into containers-storage, chunked into component layers",
    );
    let json = run_stdout(
        env.ostree_container()
            .args(["encapsulate", "--json", "--repo"])
            .arg(&repo)
            .arg("sample/os")
            .arg("containers-storage:localhost/sample-os:1"),
    )?;
    let r: serde_json::Value = serde_json::from_str(&json)?;
    println!(
        "image localhost/sample-os:1, manifest {}",
        r["manifest_digest"].as_str().unwrap_or("?")
    );
    for l in r["layers"].as_array().context("layers")? {
        println!(
            "  layer {:>2}  {:>9} bytes  {}",
            l["index"],
            l["uncompressed_size"],
            l["description"].as_str().unwrap_or("")
        );
    }

    step(3, "podman run the exported image");
    print!(
        "{}",
        run_stdout(env.podman.podman().args([
            "run",
            "--rm",
            "localhost/sample-os:1",
            "/usr/bin/sh",
            "-c",
            "hello && cat /etc/os-release"
        ]))?
    );

    step(4, "podman build a derived image FROM it");
    let containerfile = "FROM localhost/sample-os:1\nRUN echo 'greetings from the derived image' > /usr/share/greeting && echo 'motd=1' > /etc/derived.conf\n";
    print!("{containerfile}");
    env.podman_build("localhost/my-os:1", containerfile)?;

    step(5, "podman run the derived image");
    print!(
        "{}",
        run_stdout(env.podman.podman().args([
            "run",
            "--rm",
            "localhost/my-os:1",
            "/usr/bin/sh",
            "-c",
            "cat /usr/share/greeting /etc/derived.conf"
        ]))?
    );

    step(
        6,
        "pull the derived image back into an ostree repo as one merged commit",
    );
    let dst = env.path().join("host-repo");
    storage_bridge::fixture::create_repo(&dst, ostree::RepoMode::Bare)?;
    print!(
        "{}",
        run_stdout(
            env.ostree_container()
                .args(["image", "pull"])
                .arg(&dst)
                .arg("ostree-unverified-image:containers-storage:localhost/my-os:1")
        )?
    );

    step(
        7,
        "deploy the derived image into a throwaway sysroot, then show its status",
    );
    let sysroot = ostree_bridge_tests::new_sysroot(env.path(), "sysroot", "myos")?;
    print!(
        "{}",
        run_stdout(
            env.ostree_container()
                .args(["image", "deploy", "--stateroot", "myos", "--sysroot"])
                .arg(&sysroot)
                .args([
                    "--imgref",
                    "ostree-unverified-image:containers-storage:localhost/my-os:1",
                    "--karg",
                    "demo=1"
                ])
        )?
    );
    print!(
        "{}",
        run_stdout(
            env.ostree_container()
                .args(["status", "--sysroot"])
                .arg(&sysroot)
        )?
    );
    let entries = sysroot.join("boot/loader/entries");
    for e in std::fs::read_dir(&entries)? {
        let p = e?.path();
        println!("--- {}", p.display());
        print!("{}", std::fs::read_to_string(&p)?);
    }

    step(
        8,
        "export the same commit to an oci: directory (what ostree-ext and bootc also read)",
    );
    let oci = env.path().join("oci");
    let d = run_stdout(
        env.ostree_container()
            .args(["encapsulate", "-q", "--repo"])
            .arg(&repo)
            .arg("sample/os")
            .arg(format!("oci:{}:1", oci.display())),
    )?;
    println!("oci:{}:1 {}", oci.display(), d.trim());

    println!("Demo complete.");
    Ok(())
}
