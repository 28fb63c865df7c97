//! OCI image of a pure ostree commit ─▶ that commit, restored exactly.
//!
//! ```text
//! open source (oci: in place; other transports staged by `skopeo copy` into a temp layout)
//!   ─▶ manifest + config (digests verified) ─▶ layout: layers up to ostree.final-diffid
//!   ─▶ one transaction: each layer blob not in the layer cache ─▶ verify digest/size/diff_id
//!      ─▶ ObjectImporter ─▶ layer cache refs (layer_cache.rs)
//!   ─▶ commit == ostree.commit label, complete ─▶ optional ref ─▶ commit the transaction
//! ```
//! A derived image (layers after the ostree ones) is refused: that is `image pull`'s job.

use crate::imgref::OstreeImageReference;
use crate::labels::OSTREE_COMMIT;
use crate::progress::Progress;
use crate::tar::tar_to_commit::LayerStats;
use crate::transport::SkopeoOptions;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Largest uncompressed layer (a decompression bomb stops here).
pub const MAX_LAYER_UNCOMPRESSED: u64 = 64 << 30;

/// Options for [`unencapsulate`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct UnencapsulateOptions {
    /// Point this ref at the imported commit.
    pub write_ref: Option<String>,
    pub skopeo: SkopeoOptions,
    /// Layers read at once (0: [`super::pull::DEFAULT_JOBS`]).
    pub jobs: usize,
}

/// What [`unencapsulate`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnencapsulateReport {
    pub commit: String,
    pub manifest_digest: String,
    pub layers: Vec<LayerStats>,
    pub write_ref: Option<String>,
}

/// Import the commit an ostree image encapsulates into the repository at `repo_path`.
pub fn unencapsulate(
    repo_path: &Path,
    imgref: &OstreeImageReference,
    opts: &UnencapsulateOptions,
    progress: &dyn Progress,
) -> Result<UnencapsulateReport> {
    let repo = crate::commit::open_repo(repo_path)?;
    progress.phase("reading the image");
    let src = crate::sigverify::open_source(imgref, &opts.skopeo)?;
    let name = imgref.imgref.to_string();
    let n = src.ostree_layer_count(&name)?;
    if n == 0 {
        bail!("{name}: not an ostree image (no {OSTREE_COMMIT} label)");
    }
    let layers = src.layers();
    if layers.len() > n {
        bail!("{name} is a derived image ({} layers after the ostree commit); unencapsulate takes pure ostree images (image pull takes derived ones)", layers.len() - n);
    }

    crate::sigverify::verify_base(&repo, imgref, &src, src.ostree_commit())?;
    let r = crate::commit::in_transaction(&repo, |partials| -> Result<(String, Vec<LayerStats>)> {
        if let Some(c) = src.ostree_commit() {
            partials.note(c);
        }
        let cached = src.cached_chunks(&repo, n)?;
        let jobs = if opts.jobs == 0 {
            super::pull::DEFAULT_JOBS
        } else {
            opts.jobs
        };
        let (csum, stats) =
            src.import_ostree_layers(&repo, n, &cached, jobs, partials, progress)?;
        if let Some(r) = &opts.write_ref {
            repo.transaction_set_ref(None, r, Some(&csum));
        }
        Ok((csum, stats))
    });
    let (commit, layers) = r.with_context(|| format!("importing {imgref}"))?;
    Ok(UnencapsulateReport {
        commit,
        manifest_digest: src.manifest_digest.clone(),
        layers,
        write_ref: opts.write_ref.clone(),
    })
}
