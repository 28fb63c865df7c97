//! Reaching every transport: `oci:` directories directly, everything else through
//! `skopeo copy` from a staged OCI directory; and reading a prior build's manifest.

use crate::chunking::PriorLayout;
use crate::imgref::{ImageReference, Transport};
use crate::labels::{COMPONENTS, COMPONENT_SEPARATOR};
use crate::oci::ocidir::OciDir;
use anyhow::{anyhow, bail, Context, Result};
use cap_std::fs::Dir;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Largest manifest we read (a prior build's).
const MAX_MANIFEST: u64 = 4 << 20;

/// Look a program up on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The skopeo binary, or an error that says how to get it.
pub fn skopeo() -> Result<PathBuf> {
    find_program("skopeo").ok_or_else(|| {
        anyhow!("skopeo is not installed (not found in PATH); it is needed for every transport but oci: (apt-get install skopeo)")
    })
}

/// Options for talking to registries and stores through skopeo.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SkopeoOptions {
    /// `--authfile`
    pub authfile: Option<PathBuf>,
    /// `--tls-verify=false` when Some(false).
    pub tls_verify: Option<bool>,
    /// `--cert-dir`
    pub cert_dir: Option<PathBuf>,
    /// The containers-policy.json that decides for `ostree-image-signed:` images (`--policy`);
    /// None: skopeo's own (`$HOME/.config/containers/policy.json`, else
    /// `/etc/containers/policy.json`). Used only with `enforce_policy`.
    pub policy: Option<PathBuf>,
    /// Read every source, `oci:` included, through `skopeo copy` under `policy`, so that the
    /// policy decides (set by `sigverify` for `ostree-image-signed:`).
    pub enforce_policy: bool,
    /// Longest wait for progress from skopeo's image proxy (a stalled source fails after it).
    pub idle_timeout: Option<std::time::Duration>,
}

fn run_skopeo(args: &[String], what: &str) -> Result<Vec<u8>> {
    let bin = skopeo()?;
    let out = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = skopeo_message(err.trim().lines().last().unwrap_or(""));
        bail!("{what}: skopeo failed ({}): {err}", out.status);
    }
    Ok(out.stdout)
}

/// The `msg="..."` part of a logrus line (`time=... level=fatal msg="..."`), unescaped.
fn skopeo_message(line: &str) -> String {
    let line = line.trim();
    match line.find("msg=\"") {
        Some(i) => {
            let body = &line[i + 5..];
            let body = body.strip_suffix('"').unwrap_or(body);
            body.replace("\\\"", "\"")
        }
        None => line.to_string(),
    }
}

/// `skopeo copy oci:SRC DEST`; returns the manifest digest skopeo wrote, when it says.
pub fn skopeo_copy(
    src_oci: &Path,
    src_tag: Option<&str>,
    dest: &str,
    opts: &SkopeoOptions,
    digestfile: &Path,
) -> Result<Option<String>> {
    let mut args: Vec<String> = vec!["copy".into(), "--quiet".into()];
    if let Some(a) = &opts.authfile {
        args.push(format!("--dest-authfile={}", a.display()));
    }
    if let Some(v) = opts.tls_verify {
        args.push(format!("--dest-tls-verify={v}"));
    }
    if let Some(c) = &opts.cert_dir {
        args.push(format!("--dest-cert-dir={}", c.display()));
    }
    args.push(format!("--digestfile={}", digestfile.display()));
    let src = match src_tag {
        Some(t) => format!("oci:{}:{t}", src_oci.display()),
        None => format!("oci:{}", src_oci.display()),
    };
    args.push(src);
    args.push(dest.to_string());
    run_skopeo(&args, &format!("copying the image to {dest}"))?;
    Ok(std::fs::read_to_string(digestfile)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty()))
}

/// `skopeo copy SRC oci:DIR`: stage any image as an OCI layout, keeping the source's manifest
/// byte for byte when the layers allow it (`--preserve-digests`), converting otherwise (a
/// containers-storage image that came from a compressed one cannot hand its blobs out as
/// they were named).
/// Returns whether the source's manifest was kept byte for byte.
pub fn skopeo_copy_to_oci(src: &str, dir: &Path, opts: &SkopeoOptions) -> Result<bool> {
    let mut args: Vec<String> = vec!["copy".into(), "--quiet".into()];
    if let Some(p) = opts.policy.as_ref().filter(|_| opts.enforce_policy) {
        args.insert(0, format!("--policy={}", p.display()));
    }
    if let Some(a) = &opts.authfile {
        args.push(format!("--src-authfile={}", a.display()));
    }
    if let Some(v) = opts.tls_verify {
        args.push(format!("--src-tls-verify={v}"));
    }
    args.push(src.to_string());
    args.push(format!("oci:{}", dir.display()));
    // docker-archive synthesizes a manifest whose media types do not match its blobs; keep
    // the digests only where the source's manifest is real (stores and registries).
    if src.starts_with(Transport::ContainerStorage.prefix())
        || src.starts_with(Transport::Registry.prefix())
    {
        let mut preserving = args.clone();
        preserving.insert(preserving.len() - 2, "--preserve-digests".into());
        if run_skopeo(&preserving, &format!("reading {src}")).is_ok() {
            return Ok(true);
        }
    }
    run_skopeo(&args, &format!("reading {src}"))?;
    Ok(false)
}

/// Read an image's manifest (not an index) wherever it lives.
pub fn read_manifest(r: &ImageReference, opts: &SkopeoOptions) -> Result<serde_json::Value> {
    let data = if r.transport == Transport::OciDir {
        let (path, tag) = r.path_and_tag();
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .with_context(|| format!("opening OCI directory {path}"))?;
        let oci = OciDir::open_existing(dir)?;
        let m = oci.find_manifest(tag)?;
        oci.read_blob(&m.digest, MAX_MANIFEST)?
    } else {
        read_manifest_bytes(r, opts)?
    };
    let v: serde_json::Value =
        serde_json::from_slice(&data).with_context(|| format!("parsing the manifest of {r}"))?;
    if v.get("manifests").is_some() {
        bail!("{r} is an image index, not a single image manifest");
    }
    if !v.get("layers").is_some_and(|l| l.is_array()) {
        bail!("the manifest of {r} has no layers list");
    }
    Ok(v)
}

/// The manifest digest `r` resolves to now, reading only the manifest (no layer).
pub fn manifest_digest(r: &ImageReference, opts: &SkopeoOptions) -> Result<String> {
    if r.transport == Transport::OciDir {
        let (path, tag) = r.path_and_tag();
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .with_context(|| format!("opening OCI directory {path}"))?;
        return Ok(OciDir::open_existing(dir)?.find_manifest(tag)?.digest);
    }
    let v = read_manifest_bytes(r, opts)?;
    Ok(format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&v))
    ))
}

pub fn read_manifest_bytes(r: &ImageReference, opts: &SkopeoOptions) -> Result<Vec<u8>> {
    let mut args: Vec<String> = vec!["inspect".into(), "--raw".into()];
    if let Some(a) = &opts.authfile {
        args.push(format!("--authfile={}", a.display()));
    }
    if let Some(v) = opts.tls_verify {
        args.push(format!("--tls-verify={v}"));
    }
    args.push(r.to_string());
    let data = run_skopeo(&args, &format!("reading the manifest of {r}"))?;
    if data.len() as u64 > MAX_MANIFEST {
        bail!("manifest of {r} is over {MAX_MANIFEST} bytes");
    }
    Ok(data)
}

/// The chunk layout of a prior build: `ostree.components` of layers 1.., or an error naming the
/// first layer without it.
pub fn prior_layout(manifest: &serde_json::Value) -> Result<PriorLayout> {
    let layers = manifest
        .get("layers")
        .and_then(|l| l.as_array())
        .context("manifest has no layers")?;
    layers
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, l)| {
            let a = l
                .get("annotations")
                .and_then(|a| a.get(COMPONENTS))
                .and_then(|v| v.as_str())
                .ok_or_else(|| anyhow!("layer {i} has no {COMPONENTS} annotation"))?;
            Ok(a.split(COMPONENT_SEPARATOR)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skopeo_messages_lose_their_logrus_frame() {
        assert_eq!(
            skopeo_message(r#"time="x" level=fatal msg="pinging \"http://a\": refused""#),
            r#"pinging "http://a": refused"#
        );
        assert_eq!(skopeo_message("plain error"), "plain error");
    }

    #[test]
    fn prior_layout_reads_component_annotations() {
        let m = serde_json::json!({"layers": [
            {"digest": "a"},
            {"annotations": {"ostree.components": "bash,coreutils"}},
            {"annotations": {"ostree.components": ""}},
        ]});
        assert_eq!(
            prior_layout(&m).unwrap(),
            vec![vec!["bash".to_string(), "coreutils".to_string()], vec![]]
        );
        let bad = serde_json::json!({"layers": [{"digest": "a"}, {"digest": "b"}]});
        assert!(prior_layout(&bad)
            .unwrap_err()
            .to_string()
            .contains("layer 1"));
    }
}
