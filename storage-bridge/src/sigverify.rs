//! How an imported image is verified, for each form of reference (REFERENCE §1), in one place.
//!
//! ```text
//! ostree-remote-image:R:T:N    open_source: as for unverified images
//!                              ─▶ verify_base: the image's commit object and detached metadata
//!                                 (layer 0), checked by libostree with the keys of ostree remote
//!                                 R (GPG; ed25519 when libostree was built with it), and the
//!                                 commit must be the one the import restores
//!                              ─▶ only then the repo transaction
//! ostree-image-signed:T:N      open_source: policy_path ─▶ policy_default ─▶ refuse a default of
//!                              insecureAcceptAnything ─▶ every transport, oci: included, staged
//!                              by `skopeo --policy FILE copy` (containers/image enforces it)
//! ostree-unverified-…, T:N     no check
//! ```
//!
//! A derived image under `ostree-remote-image:` is accepted as ostree-ext accepts it: the base
//! commit (the ostree layers) is verified, the layers built on top of it cannot be (they carry
//! no ostree signature); `ostree-image-signed:` covers the whole image.

use crate::imgref::{OstreeImageReference, SignatureSource};
use crate::labels::OSTREE_COMMIT;
use crate::pipeline::source::Source;
use crate::pipeline::unencapsulate::MAX_LAYER_UNCOMPRESSED;
use crate::transport::SkopeoOptions;
use anyhow::{bail, Context, Result};
use ostree::glib;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where containers/image looks for its policy when none is given.
pub const SYSTEM_POLICY: &str = "/etc/containers/policy.json";
/// The per-user policy, relative to `$HOME`; it wins over [`SYSTEM_POLICY`] when it exists.
pub const USER_POLICY: &str = ".config/containers/policy.json";

/// Detached metadata keys that hold commit signatures (GPG; ostree's sign API).
const SIGNATURE_KEYS: &[&str] = &["ostree.gpgsigs", "ostree.sign.ed25519"];
/// Largest commit or detached metadata object read (ostree's own metadata limit).
const MAX_METADATA: u64 = 10 << 20;

/// Why an image was refused by its verification. `image` is the whole reference, as given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// `ostree-remote-image:` names a remote the repository does not have.
    #[error("{image}: cannot verify commit {commit}: the repository has no ostree remote {remote:?} (add it with its key: ostree remote add --gpg-import=KEY.asc {remote} URL)")]
    NoRemote {
        image: String,
        commit: String,
        remote: String,
    },
    /// The image's commit has no signature at all.
    #[error("{image}: commit {commit} is not signed (no signature in the image's detached commit metadata); ostree remote {remote:?} requires a signed commit")]
    Unsigned {
        image: String,
        commit: String,
        remote: String,
    },
    /// libostree refused the signatures (unknown key, bad or expired signature, …).
    #[error("{image}: the signature of commit {commit} does not verify with the keys of ostree remote {remote:?}: {reason}")]
    Rejected {
        image: String,
        commit: String,
        remote: String,
        reason: String,
    },
    /// A plain OCI image has no commit a remote's keys could check.
    #[error("{image} is not an ostree image: there is no commit whose signature ostree remote {remote:?} could verify")]
    NoCommit { image: String, remote: String },
    /// `ostree-image-signed:` with a policy that verifies nothing.
    #[error("{image}: {path} is not a verifying policy: its default is insecureAcceptAnything, which accepts any image (ostree-image-signed: needs a policy that checks signatures; use ostree-unverified-image: to import without verification)")]
    InsecurePolicy { image: String, path: String },
    /// The policy file cannot be read or is malformed.
    #[error("{image}: cannot use containers policy {path}: {reason}")]
    BadPolicy {
        image: String,
        path: String,
        reason: String,
    },
}

/// What a policy's `default` requirements do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyDefault {
    /// Every requirement is `insecureAcceptAnything`: anything not matched by a transport scope
    /// is accepted unchecked.
    AcceptsAnything,
    /// At least one requirement (`reject`, `signedBy`, `sigstoreSigned`, …) must hold.
    Verifies,
}

/// Read a containers-policy.json's `default` (pure). containers/image requires every
/// requirement of the list, so the default accepts anything only when all of them are
/// `insecureAcceptAnything`; an empty or missing default is invalid.
pub fn policy_default(json: &[u8]) -> Result<PolicyDefault, String> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("not valid JSON: {e}"))?;
    let default = v
        .get("default")
        .ok_or("no \"default\" requirements")?
        .as_array()
        .ok_or("\"default\" is not a list of requirements")?;
    if default.is_empty() {
        return Err("\"default\" is an empty list of requirements".into());
    }
    let mut all_insecure = true;
    for (i, r) in default.iter().enumerate() {
        let t = r
            .get("type")
            .and_then(|t| t.as_str())
            .ok_or_else(|| format!("default requirement {i} has no \"type\""))?;
        all_insecure &= t == "insecureAcceptAnything";
    }
    Ok(if all_insecure {
        PolicyDefault::AcceptsAnything
    } else {
        PolicyDefault::Verifies
    })
}

/// The policy file skopeo uses: the explicit one, else `$HOME/.config/containers/policy.json`
/// when it exists, else `/etc/containers/policy.json` (containers/image's order; it reads no
/// environment variable for it).
pub fn policy_path(
    explicit: Option<&Path>,
    home: Option<&Path>,
    exists: impl Fn(&Path) -> bool,
) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(user) = home.map(|h| h.join(USER_POLICY)).filter(|p| exists(p)) {
        return user;
    }
    PathBuf::from(SYSTEM_POLICY)
}

/// Check the policy for `ostree-image-signed:`; the path skopeo must be given.
fn checked_policy(image: &str, explicit: Option<&Path>) -> Result<PathBuf, SignatureError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path = policy_path(explicit, home.as_deref(), Path::is_file);
    let bad = |reason: String| SignatureError::BadPolicy {
        image: image.to_string(),
        path: path.display().to_string(),
        reason,
    };
    let data = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
    match policy_default(&data).map_err(bad)? {
        PolicyDefault::Verifies => Ok(path),
        PolicyDefault::AcceptsAnything => Err(SignatureError::InsecurePolicy {
            image: image.to_string(),
            path: path.display().to_string(),
        }),
    }
}

/// Open the image for import as its reference's verification requires: for
/// `ostree-image-signed:`, the policy is checked and every transport is read through skopeo
/// under it; the other forms open as before.
pub fn open_source(imgref: &OstreeImageReference, opts: &SkopeoOptions) -> Result<Source> {
    match &imgref.sigverify {
        SignatureSource::ContainerPolicy => {
            let path = checked_policy(&imgref.to_string(), opts.policy.as_deref())?;
            let what = format!(
                "{imgref}: reading under containers policy {}",
                path.display()
            );
            let mut o = opts.clone();
            o.policy = Some(path);
            o.enforce_policy = true;
            Source::open(&imgref.imgref, &o).context(what)
        }
        _ => Source::open(&imgref.imgref, opts),
    }
}

/// For `ostree-remote-image:`, before anything of the image is written: the image's own commit
/// object and detached metadata (layer 0) are checked with the keys of the remote, and the
/// commit must be `base`, the commit the import will restore (its label). Checking the image's
/// bytes rather than the repo's copy keeps the check independent of what the repo already
/// holds, and a refused image leaves nothing behind: libostree keeps an aborted transaction's
/// staging directory for the next transaction to reuse.
pub fn verify_base(
    repo: &ostree::Repo,
    imgref: &OstreeImageReference,
    src: &Source,
    base: Option<&str>,
) -> Result<()> {
    let SignatureSource::OstreeRemote(remote) = &imgref.sigverify else {
        return Ok(());
    };
    let image = imgref.to_string();
    let ids = |commit: &str| (image.clone(), commit.to_string(), remote.clone());
    let Some(commit) = base else {
        return Err(SignatureError::NoCommit {
            image,
            remote: remote.clone(),
        }
        .into());
    };
    if !repo.remote_list().iter().any(|r| r.as_str() == remote) {
        let (image, commit, remote) = ids(commit);
        return Err(SignatureError::NoRemote {
            image,
            commit,
            remote,
        }
        .into());
    }
    let (commit_bytes, meta) =
        image_commit(src).with_context(|| format!("{image}: reading the commit to verify"))?;
    let got = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&commit_bytes));
    if got != commit {
        bail!(
            "{image}: layer 0 holds commit {got}, the image's {OSTREE_COMMIT} label says {commit}"
        );
    }
    let meta = meta.map(|m| {
        glib::Variant::from_bytes_with_type(&glib::Bytes::from(&m[..]), glib::VariantTy::VARDICT)
            .normal_form()
    });
    let signed = meta.as_ref().is_some_and(|m| {
        let d = glib::VariantDict::new(Some(m));
        SIGNATURE_KEYS.iter().any(|k| d.contains(k))
    });
    let Some(meta) = meta.filter(|_| signed) else {
        let (image, commit, remote) = ids(commit);
        return Err(SignatureError::Unsigned {
            image,
            commit,
            remote,
        }
        .into());
    };
    repo.signature_verify_commit_data(
        remote,
        &glib::Bytes::from(&commit_bytes[..]),
        &meta.data_as_bytes(),
        ostree::RepoVerifyFlags::empty(),
    )
    .map_err(|e| {
        let (image, commit, remote) = ids(commit);
        SignatureError::Rejected {
            image,
            commit,
            remote,
            // libostree reports one line per signature.
            reason: e.message().trim().replace('\n', "; "),
        }
    })?;
    Ok(())
}

/// The commit object and its detached metadata as layer 0 carries them: the first object of
/// the layer, and the object right after it when that is its `.commitmeta` (REFERENCE §2).
fn image_commit(src: &Source) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    const OBJECTS: &str = "sysroot/ostree/repo/objects/";
    let layer = src.layer(0, MAX_LAYER_UNCOMPRESSED)?;
    let mut ar = tar::Archive::new(layer);
    let mut commit: Option<(String, Vec<u8>)> = None;
    for entry in ar.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(name) = path.trim_start_matches("./").strip_prefix(OBJECTS) else {
            continue;
        };
        let (csum, kind) = name
            .split_once('.')
            .map(|(c, k)| (c.replace('/', ""), k.to_string()))
            .unwrap_or_default();
        let size = entry.header().size()?;
        let mut read = || -> Result<Vec<u8>> {
            if size > MAX_METADATA {
                bail!("{path} is {size} bytes, over the {MAX_METADATA} byte limit");
            }
            let mut buf = Vec::new();
            (&mut entry).take(MAX_METADATA).read_to_end(&mut buf)?;
            Ok(buf)
        };
        match (commit.take(), kind.as_str()) {
            (None, "commit") => commit = Some((csum, read()?)),
            (None, _) => bail!("layer 0 does not start with the commit object ({path})"),
            (Some((c, data)), "commitmeta") if c == csum => return Ok((data, Some(read()?))),
            (Some((_, data)), _) => return Ok((data, None)),
        }
    }
    match commit {
        Some((_, data)) => Ok((data, None)),
        None => bail!("layer 0 holds no commit object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_policy_default() {
        use PolicyDefault::*;
        let ok: &[(&str, PolicyDefault)] = &[
            (
                r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
                AcceptsAnything,
            ),
            (
                r#"{"default":[{"type":"insecureAcceptAnything"},{"type":"insecureAcceptAnything"}]}"#,
                AcceptsAnything,
            ),
            (r#"{"default":[{"type":"reject"}]}"#, Verifies),
            (
                r#"{"default":[{"type":"insecureAcceptAnything"},{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k"}]}"#,
                Verifies,
            ),
            // Transport scopes do not change the default.
            (
                r#"{"default":[{"type":"reject"}],"transports":{"oci":{"":[{"type":"insecureAcceptAnything"}]}}}"#,
                Verifies,
            ),
        ];
        for (json, want) in ok {
            assert_eq!(policy_default(json.as_bytes()), Ok(*want), "{json}");
        }
        for (json, rule) in [
            ("nope", "not valid JSON"),
            (r#"{"transports":{}}"#, "no \"default\""),
            (r#"{"default":{}}"#, "not a list"),
            (r#"{"default":[]}"#, "empty list"),
            (
                r#"{"default":[{"keyType":"x"}]}"#,
                "requirement 0 has no \"type\"",
            ),
        ] {
            let e = policy_default(json.as_bytes()).unwrap_err();
            assert!(e.contains(rule), "{json}: {e}");
        }
    }

    #[test]
    fn finds_the_policy_like_containers_image() {
        let home = Path::new("/home/u");
        let user = home.join(USER_POLICY);
        let cases: &[(Option<&str>, bool, &str)] = &[
            (Some("/x/p.json"), true, "/x/p.json"),
            (None, true, "/home/u/.config/containers/policy.json"),
            (None, false, SYSTEM_POLICY),
        ];
        for (explicit, user_exists, want) in cases {
            let got = policy_path(explicit.map(Path::new), Some(home), |p| {
                *user_exists && p == user
            });
            assert_eq!(got, Path::new(want), "{explicit:?} {user_exists}");
        }
        assert_eq!(policy_path(None, None, |_| true), Path::new(SYSTEM_POLICY));
    }

    #[test]
    fn errors_name_the_image_the_commit_the_remote_and_the_rule() {
        let i = || "ostree-remote-image:fedora:oci:/x".to_string();
        let c = || "ab12".to_string();
        let r = || "fedora".to_string();
        let cases = [
            (
                SignatureError::NoRemote {
                    image: i(),
                    commit: c(),
                    remote: r(),
                },
                "no ostree remote \"fedora\"",
            ),
            (
                SignatureError::Unsigned {
                    image: i(),
                    commit: c(),
                    remote: r(),
                },
                "commit ab12 is not signed",
            ),
            (
                SignatureError::Rejected {
                    image: i(),
                    commit: c(),
                    remote: r(),
                    reason: "BAD signature".into(),
                },
                "does not verify with the keys of ostree remote \"fedora\": BAD signature",
            ),
        ];
        for (e, want) in cases {
            let s = e.to_string();
            assert!(
                s.starts_with("ostree-remote-image:fedora:oci:/x: ")
                    && s.contains(want)
                    && s.contains("ab12"),
                "{s}"
            );
        }
        let e = SignatureError::InsecurePolicy {
            image: "ostree-image-signed:oci:/x".into(),
            path: "/p.json".into(),
        };
        assert!(e.to_string().contains("/p.json is not a verifying policy"));
    }
}
