//! OCI image of a pure ostree commit ─▶ that commit, restored exactly.
//!
//! ```text
//! open source (oci: in place; other transports staged by `skopeo copy` into a temp layout)
//!   ─▶ manifest + config (digests verified) ─▶ layout: layers up to ostree.final-diffid
//!   ─▶ one transaction: each layer blob ─▶ verify digest/size/diff_id ─▶ ObjectImporter
//!   ─▶ commit == ostree.commit label, complete ─▶ optional ref ─▶ commit the transaction
//! ```
//! A derived image (layers after the ostree ones) is refused: that is `image pull`'s job.

use crate::imgref::{ImageReference, OstreeImageReference, SignatureSource, Transport};
use crate::labels::{FINAL_DIFFID, OSTREE_COMMIT};
use crate::oci::blob_read::VerifiedLayer;
use crate::oci::ocidir::OciDir;
use crate::progress::Progress;
use crate::tar::tar_to_commit::{LayerRole, LayerStats, ObjectImporter};
use crate::transport::{self, SkopeoOptions};
use anyhow::{anyhow, bail, Context, Result};
use cap_std::fs::Dir;
use ostree::gio;
use serde_json::Value;
use std::path::Path;

/// Largest manifest or config read.
const MAX_DOC: u64 = 4 << 20;
/// Largest uncompressed layer (a decompression bomb stops here).
pub const MAX_LAYER_UNCOMPRESSED: u64 = 64 << 30;

/// Options for [`unencapsulate`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct UnencapsulateOptions {
    /// Point this ref at the imported commit.
    pub write_ref: Option<String>,
    pub skopeo: SkopeoOptions,
}

/// What [`unencapsulate`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnencapsulateReport {
    pub commit: String,
    pub manifest_digest: String,
    pub layers: Vec<LayerStats>,
    pub write_ref: Option<String>,
}

/// An image source opened as an OCI layout.
struct Source {
    oci: OciDir,
    tag: Option<String>,
    _staged: Option<tempfile::TempDir>,
}

fn open_source(r: &ImageReference, opts: &SkopeoOptions) -> Result<Source> {
    if r.transport == Transport::OciDir {
        let (p, tag) = r.path_and_tag();
        if !Path::new(p).join("index.json").is_file() {
            bail!("{r}: no OCI image layout at {p} (no index.json)");
        }
        let dir = Dir::open_ambient_dir(p, cap_std::ambient_authority())
            .with_context(|| format!("opening {p}"))?;
        return Ok(Source {
            oci: OciDir::ensure(dir)?,
            tag: tag.map(str::to_string),
            _staged: None,
        });
    }
    let tmp = tempfile::Builder::new()
        .prefix("ostree-container-src-")
        .tempdir()?;
    transport::skopeo_copy_to_oci(&r.to_string(), tmp.path(), opts)?;
    let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority())?;
    Ok(Source {
        oci: OciDir::ensure(dir)?,
        tag: None,
        _staged: Some(tmp),
    })
}

/// The ostree layers of `manifest`: indexes 0..=n, or an error for a non-ostree or derived image.
pub fn ostree_layer_count(imgref: &str, manifest: &Value, config: &Value) -> Result<usize> {
    let layers = manifest["layers"]
        .as_array()
        .ok_or_else(|| anyhow!("{imgref}: the manifest has no layers"))?;
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| anyhow!("{imgref}: the config has no rootfs.diff_ids"))?;
    if layers.len() != diff_ids.len() {
        bail!(
            "{imgref}: the manifest lists {} layers but the config {} diff_ids",
            layers.len(),
            diff_ids.len()
        );
    }
    if layers.is_empty() {
        bail!("{imgref}: the image has no layers");
    }
    let labels = &config["config"]["Labels"];
    if labels[OSTREE_COMMIT].as_str().is_none() {
        bail!("{imgref}: not an ostree image (no {OSTREE_COMMIT} label)");
    }
    let n = match labels[FINAL_DIFFID].as_str() {
        Some(d) => {
            let i = diff_ids
                .iter()
                .position(|x| x.as_str() == Some(d))
                .ok_or_else(|| anyhow!("{imgref}: {FINAL_DIFFID} {d} is not among the config's diff_ids"))?;
            i + 1
        }
        // Old single-layer images carry no final-diffid label.
        None if layers.len() == 1 => 1,
        None => bail!("{imgref}: several layers but no {FINAL_DIFFID} label: cannot tell the ostree layers apart"),
    };
    Ok(n)
}

/// Import the commit an ostree image encapsulates into the repository at `repo_path`.
pub fn unencapsulate(
    repo_path: &Path,
    imgref: &OstreeImageReference,
    opts: &UnencapsulateOptions,
    progress: &dyn Progress,
) -> Result<UnencapsulateReport> {
    match &imgref.sigverify {
        SignatureSource::Unverified => {}
        other => bail!(
            "{imgref}: verification {other:?} is not supported yet; use ostree-unverified-image:"
        ),
    }
    let repo = crate::commit::open_repo(repo_path)?;
    progress.phase("reading the image");
    let src = open_source(&imgref.imgref, &opts.skopeo)?;
    let mdesc = src.oci.find_manifest(src.tag.as_deref())?;
    let manifest: Value = serde_json::from_slice(&src.oci.read_blob(&mdesc.digest, MAX_DOC)?)
        .context("parsing the manifest")?;
    let cdigest = manifest["config"]["digest"]
        .as_str()
        .ok_or_else(|| anyhow!("the manifest names no config"))?;
    let config: Value = serde_json::from_slice(&src.oci.read_blob(cdigest, MAX_DOC)?)
        .context("parsing the config")?;
    let name = imgref.imgref.to_string();
    let n = ostree_layer_count(&name, &manifest, &config)?;
    let layers = manifest["layers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if layers.len() > n {
        bail!("{name} is a derived image ({} layers after the ostree commit); unencapsulate takes pure ostree images (image pull takes derived ones)", layers.len() - n);
    }
    let want = config["config"]["Labels"][OSTREE_COMMIT]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();

    repo.prepare_transaction(gio::Cancellable::NONE)?;
    let r = (|| -> Result<(String, Vec<LayerStats>)> {
        let mut imp = ObjectImporter::new(&repo);
        let mut stats = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let digest = l["digest"]
                .as_str()
                .ok_or_else(|| anyhow!("layer {i} has no digest"))?;
            let size = l["size"]
                .as_u64()
                .ok_or_else(|| anyhow!("layer {i} has no size"))?;
            let mt = l["mediaType"].as_str().unwrap_or_default();
            let desc = format!("layer {i} ({digest})");
            progress.layer_start(i, &desc, size);
            let f = src.oci.open_blob(digest).with_context(|| desc.clone())?;
            let mut v = VerifiedLayer::new(
                f,
                mt,
                digest,
                size,
                diff_ids.get(i).and_then(|d| d.as_str()),
                MAX_LAYER_UNCOMPRESSED,
            )
            .with_context(|| desc.clone())?;
            let role = if i == 0 {
                LayerRole::Commit
            } else {
                LayerRole::Chunk
            };
            let s = imp.import_layer(&mut v, role, &desc)?;
            v.finish().with_context(|| desc.clone())?;
            progress.layer_done(i);
            stats.push(s);
        }
        let got = imp.commit().unwrap_or_default().to_string();
        if got != want {
            bail!("the image's {OSTREE_COMMIT} label says {want}, its commit layer holds {got}");
        }
        let csum = imp.finish()?;
        if let Some(r) = &opts.write_ref {
            repo.transaction_set_ref(None, r, Some(&csum));
        }
        Ok((csum, stats))
    })();
    match r {
        Ok((commit, layers)) => {
            repo.commit_transaction(gio::Cancellable::NONE)
                .context("committing the transaction")?;
            Ok(UnencapsulateReport {
                commit,
                manifest_digest: mdesc.digest,
                layers,
                write_ref: opts.write_ref.clone(),
            })
        }
        Err(e) => {
            repo.abort_transaction(gio::Cancellable::NONE).ok();
            Err(e.context(format!("importing {imgref}")))
        }
    }
}
