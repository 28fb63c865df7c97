//! The two verifying image references, end to end through the `ostree-container` binary:
//! `ostree-remote-image:` (the commit's GPG signature, checked with an ostree remote's keys) and
//! `ostree-image-signed:` (containers-policy.json decides, through skopeo). Every refusal must
//! name its rule and leave the target repo without a ref and fsck-clean.

use ostree_bridge_tests::oci::Layout;
use ostree_bridge_tests::{require_tool, run, run_stdout, TestEnv, SAMPLE};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A throwaway GnuPG home with passphrase-less keys; its agent is stopped on drop.
struct Gpg {
    home: PathBuf,
}

impl Gpg {
    fn new(dir: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        Gpg {
            home: dir.to_path_buf(),
        }
    }

    fn gpg(&self) -> Command {
        let mut c = Command::new(require_tool("gpg"));
        c.arg("--homedir")
            .arg(&self.home)
            .args(["--batch", "--no-tty"]);
        c
    }

    /// A new ed25519 signing key for `uid`; its fingerprint.
    fn gen_key(&self, uid: &str) -> String {
        run(self.gpg().args([
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "ed25519",
            "sign",
            "never",
        ]))
        .unwrap();
        let out = run_stdout(self.gpg().args(["--with-colons", "--list-keys", uid])).unwrap();
        out.lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| !f.is_empty()))
            .expect("a fingerprint in gpg --list-keys")
            .to_string()
    }

    /// The public key, armored.
    fn export(&self, fpr: &str, to: &Path) {
        let out = run(self.gpg().args(["--armor", "--export", fpr])).unwrap();
        std::fs::write(to, out.stdout).unwrap();
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        if let Some(gpgconf) = storage_bridge::transport::find_program("gpgconf") {
            Command::new(gpgconf)
                .arg("--homedir")
                .arg(&self.home)
                .args(["--kill", "all"])
                .output()
                .ok();
        }
    }
}

fn ostree(repo: &Path) -> Command {
    let mut c = Command::new(require_tool("ostree"));
    c.arg(format!("--repo={}", repo.display()));
    c
}

fn refs(repo: &Path) -> String {
    run_stdout(ostree(repo).arg("refs")).unwrap()
}

fn fsck(repo: &Path) {
    run(ostree(repo).arg("fsck")).unwrap();
}

/// `unencapsulate --write-ref imported` or `image pull`, as the test asks.
fn import(env: &TestEnv, verb: &str, repo: &Path, imgref: &str, extra: &[&str]) -> Output {
    let mut c = env.ostree_container();
    match verb {
        "unencapsulate" => c
            .args(["unencapsulate", "--write-ref", "imported", "--repo"])
            .arg(repo),
        _ => c.args(["image", "pull", "-q"]).arg(repo),
    };
    c.arg(imgref).args(extra).output().unwrap()
}

fn succeeds(env: &TestEnv, verb: &str, repo: &Path, imgref: &str, extra: &[&str]) -> String {
    let o = import(env, verb, repo, imgref, extra);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{verb} {imgref}: {stderr}");
    fsck(repo);
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The import fails, the error holds every one of `want`, and the repo is left as it was.
fn refused(env: &TestEnv, verb: &str, repo: &Path, imgref: &str, extra: &[&str], want: &[&str]) {
    let before = refs(repo);
    let o = import(env, verb, repo, imgref, extra);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{verb} {imgref} was accepted");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for w in want {
        assert!(
            stderr.contains(w),
            "{verb} {imgref}: want {w:?} in: {stderr}"
        );
    }
    assert_eq!(refs(repo), before, "{verb} {imgref} left a ref");
    fsck(repo);
}

/// A bare repo with these remotes (name, armored public key), URL unused.
fn target(env: &TestEnv, name: &str, remotes: &[(&str, &Path)]) -> PathBuf {
    let repo = env.new_repo(name);
    for (r, key) in remotes {
        run(ostree(&repo)
            .args(["remote", "add"])
            .arg(format!("--gpg-import={}", key.display()))
            .arg(r)
            .arg("http://127.0.0.1/unused"))
        .unwrap();
    }
    repo
}

/// Copy the OCI layout `from` to `to` with one more (uncompressed) layer holding `usr/local-file`.
fn derive(from: &Path, to: &Path) {
    run(Command::new("cp").arg("-a").arg(from).arg(to)).unwrap();
    let l = Layout::open(to);
    let mut m = l.manifest(None).unwrap();
    let mut cfg = l.config(&m).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(6);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    b.append_data(&mut h, "usr/local-file", &b"added\n"[..])
        .unwrap();
    let layer = b.into_inner().unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let d = hex::encode(Sha256::digest(data));
        std::fs::write(to.join("blobs/sha256").join(&d), data).unwrap();
        (format!("sha256:{d}"), data.len())
    };
    let (ld, ls) = put(&layer);
    cfg["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(ld.clone().into());
    let (cd, cs) = put(cfg.to_string().as_bytes());
    m["config"]["digest"] = cd.into();
    m["config"]["size"] = cs.into();
    m["layers"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}));
    let (md, ms) = put(m.to_string().as_bytes());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms}]});
    std::fs::write(to.join("index.json"), index.to_string()).unwrap();
}

#[test]
fn ostree_remote_image_checks_the_commit_signature() {
    let env = TestEnv::new();
    let p = env.path();
    let (src, csum) = env.repo_with("src", "sample", SAMPLE).unwrap();
    let unsigned = p.join("unsigned");
    env.encapsulate(&src, "sample", &format!("oci:{}", unsigned.display()), &[])
        .unwrap();
    let gpg = Gpg::new(&p.join("gnupg"));
    let good = gpg.gen_key("good <good@example.invalid>");
    let other = gpg.gen_key("other <other@example.invalid>");
    let (good_asc, other_asc) = (p.join("good.asc"), p.join("other.asc"));
    gpg.export(&good, &good_asc);
    gpg.export(&other, &other_asc);
    run(Command::new(require_tool("ostree"))
        .arg("gpg-sign")
        .arg(format!("--repo={}", src.display()))
        .arg(format!("--gpg-homedir={}", gpg.home.display()))
        .arg(&csum)
        .arg(&good))
    .unwrap();
    let signed = p.join("signed");
    env.encapsulate(&src, "sample", &format!("oci:{}", signed.display()), &[])
        .unwrap();
    let derived = p.join("derived");
    derive(&signed, &derived);
    let derived_unsigned = p.join("derived-unsigned");
    derive(&unsigned, &derived_unsigned);
    let remotes: &[(&str, &Path)] = &[("myremote", &good_asc), ("otherremote", &other_asc)];
    let img =
        |remote: &str, dir: &Path| format!("ostree-remote-image:{remote}:oci:{}", dir.display());

    for (i, verb) in ["unencapsulate", "pull"].into_iter().enumerate() {
        // Signed by the remote's key: accepted, same commit.
        let repo = target(&env, &format!("ok{i}"), remotes);
        let out = succeeds(&env, verb, &repo, &img("myremote", &signed), &[]);
        assert!(out.contains(&csum), "{verb}: {out}");
        // One ref besides the layer cache's.
        assert!(
            refs(&repo)
                .lines()
                .filter(|l| !l.starts_with("ostree/container/blob/"))
                .count()
                == 1,
            "{verb}: one ref"
        );
        // The signature came along and still verifies in the target.
        run(ostree(&repo).args(["show", "--gpg-verify-remote=myremote", &csum])).unwrap();

        let repo = target(&env, &format!("bad{i}"), remotes);
        let image = format!("oci:{}", unsigned.display());
        refused(
            &env,
            verb,
            &repo,
            &img("myremote", &unsigned),
            &[],
            &[
                &image,
                &format!("commit {csum} is not signed"),
                "ostree remote \"myremote\" requires a signed commit",
            ],
        );
        refused(
            &env,
            verb,
            &repo,
            &img("otherremote", &signed),
            &[],
            &[
                &format!("oci:{}", signed.display()),
                &format!("the signature of commit {csum} does not verify with the keys of ostree remote \"otherremote\""),
            ],
        );
        refused(
            &env,
            verb,
            &repo,
            &img("nope", &signed),
            &[],
            &[
                &format!("cannot verify commit {csum}"),
                "the repository has no ostree remote \"nope\"",
            ],
        );
        // The refusals left nothing a later import could mistake for the image's commit.
        let out = succeeds(&env, verb, &repo, &img("myremote", &signed), &[]);
        assert!(out.contains(&csum), "{verb}: {out}");
    }

    // Derived images: unencapsulate refuses them as always; pull verifies the base commit
    // (the derived layers carry no ostree signature), as ostree-ext does.
    let repo = target(&env, "derived", remotes);
    refused(
        &env,
        "unencapsulate",
        &repo,
        &img("myremote", &derived),
        &[],
        &["is a derived image"],
    );
    // The base is already in the repo, unsigned (an unverified pull): the image's own
    // signature is what counts.
    succeeds(
        &env,
        "pull",
        &repo,
        &format!("ostree-unverified-image:oci:{}", unsigned.display()),
        &[],
    );
    let out = succeeds(&env, "pull", &repo, &img("myremote", &derived), &[]);
    assert!(
        out.contains("Wrote: ostree-remote-image:myremote:oci:"),
        "{out}"
    );
    let repo = target(&env, "derived-bad", remotes);
    refused(
        &env,
        "pull",
        &repo,
        &img("myremote", &derived_unsigned),
        &[],
        &[&format!("commit {csum} is not signed")],
    );
    refused(
        &env,
        "pull",
        &repo,
        &img("otherremote", &derived),
        &[],
        &["does not verify with the keys of ostree remote \"otherremote\""],
    );
    // A plain OCI image has no commit to verify.
    let plain = p.join("plain");
    ostree_bridge_tests::oci::write_plain_image(&plain, &[Vec::from(&[0u8; 1024][..])]).unwrap();
    refused(
        &env,
        "pull",
        &repo,
        &img("myremote", &plain),
        &[],
        &["is not an ostree image: there is no commit whose signature ostree remote \"myremote\" could verify"],
    );
}

#[test]
fn ostree_image_signed_lets_the_policy_decide() {
    let env = TestEnv::new();
    let p = env.path();
    let (src, csum) = env.repo_with("src", "sample", SAMPLE).unwrap();
    let oci = format!("oci:{}/img:1", p.display());
    let archive = format!("oci-archive:{}/img.tar", p.display());
    env.encapsulate(&src, "sample", &oci, &[]).unwrap();
    env.encapsulate(&src, "sample", &archive, &[]).unwrap();

    let policy = |name: &str, json: serde_json::Value| {
        let f = p.join(name);
        std::fs::write(&f, json.to_string()).unwrap();
        f.display().to_string()
    };
    let reject = policy(
        "reject.json",
        serde_json::json!({"default": [{"type": "reject"}]}),
    );
    let insecure = policy(
        "insecure.json",
        serde_json::json!({"default": [{"type": "insecureAcceptAnything"}]}),
    );
    // A key the image has no signature of.
    let gpg = Gpg::new(&p.join("gnupg"));
    let fpr = gpg.gen_key("signer <signer@example.invalid>");
    let key = p.join("signer.gpg");
    run_stdout(gpg.gpg().args(["--export", "--output"]).arg(&key).arg(&fpr)).unwrap();
    let signed_by = policy(
        "signed-by.json",
        serde_json::json!({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": key}]}),
    );
    let anything = serde_json::json!({"": [{"type": "insecureAcceptAnything"}]});
    let accept = policy(
        "accept.json",
        serde_json::json!({"default": [{"type": "reject"}],
            "transports": {"oci": anything, "oci-archive": anything}}),
    );

    for (i, source) in [&oci, &archive].into_iter().enumerate() {
        let img = format!("ostree-image-signed:{source}");
        for verb in ["unencapsulate", "pull"] {
            let repo = env.new_repo(&format!("r{i}-{verb}"));
            refused(
                &env,
                verb,
                &repo,
                &img,
                &["--policy", &reject],
                &[
                    &format!("{img}: reading under containers policy {reject}"),
                    "rejected by policy",
                ],
            );
            refused(
                &env,
                verb,
                &repo,
                &img,
                &["--policy", &signed_by],
                &[source, "signature"],
            );
            refused(
                &env,
                verb,
                &repo,
                &img,
                &["--policy", &insecure],
                &[
                    &img,
                    &format!("{insecure} is not a verifying policy: its default is insecureAcceptAnything"),
                ],
            );
            let out = succeeds(&env, verb, &repo, &img, &["--policy", &accept]);
            assert!(out.contains(&csum), "{verb} {img}: {out}");
        }
    }

    // Without --policy, the one skopeo would use: $HOME/.config/containers/policy.json here
    // (the test's private HOME), never the machine's.
    let user = env.podman.home.join(".config/containers/policy.json");
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(&user, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
    let repo = env.new_repo("default-policy");
    refused(
        &env,
        "pull",
        &repo,
        &format!("ostree-image-signed:{oci}"),
        &[],
        &[&format!("{} is not a verifying policy", user.display())],
    );
    std::fs::copy(p.join("reject.json"), &user).unwrap();
    refused(
        &env,
        "pull",
        &repo,
        &format!("ostree-image-signed:{oci}"),
        &[],
        &["rejected by policy"],
    );
    // The unverified forms do not consult the policy for oci: (read in place, as before).
    succeeds(
        &env,
        "pull",
        &repo,
        &format!("ostree-unverified-image:{oci}"),
        &["--policy", &reject],
    );
}
