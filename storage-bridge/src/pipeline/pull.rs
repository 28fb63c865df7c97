//! Any OCI image ─▶ one deployable ostree commit under `ostree/container/image/<escaped ref>`.
//!
//! ```text
//! Source::open ─▶ layout (ostree layers up to ostree.final-diffid, then derived layers)
//!   ─▶ one transaction:
//!        base commit present and complete? skip its layers : ObjectImporter (verified),
//!          skipping chunk layers the layer cache holds
//!        each derived layer: layer cache hit, or tar ─▶ layer_to_tree ─▶ layer commit + refs
//!        TreeMerge::new(base) ─▶ apply_layer(derived 1) … apply_layer(derived N)
//!        write_mtree ─▶ merge commit (parent = base; manifest and config in its metadata)
//!   ─▶ image ref ─▶ commit the transaction
//! ```
//! A pure ostree image's ref points at the base commit itself (same checksum as the source);
//! its manifest and config go to the commit's detached metadata.

use crate::imgref::OstreeImageReference;
use crate::layer_cache;
use crate::merge::TreeMerge;
use crate::progress::Progress;
use crate::tar::layer_to_tree::{layer_to_tree_with, PathPolicy, PolicyReport};
use crate::transport::SkopeoOptions;
use anyhow::{anyhow, Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;
use serde_json::Value;
use std::path::Path;

/// Layers read at once unless the caller says otherwise.
pub const DEFAULT_JOBS: usize = 4;

/// Prefix of the refs naming imported images.
pub const IMAGE_REF_PREFIX: &str = "ostree/container/image/";
/// Commit metadata keys of a merge commit.
pub const META_MANIFEST_DIGEST: &str = "ostree.manifest-digest";
pub const META_MANIFEST: &str = "ostree.manifest";
pub const META_CONFIG: &str = "ostree.container.image-config";
pub const META_IMPORTER: &str = "ostree.importer.version";

/// Escape an image reference into a ref name (REFERENCE §5).
pub fn escape_ref(s: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let prev_alnum = i > 0 && chars[i - 1].is_ascii_alphanumeric();
        let slash_ok = c == '/' && prev_alnum && i + 1 < chars.len();
        if c.is_ascii_alphanumeric() || c == '-' || slash_ok {
            out.push(c);
        } else if c == '_' {
            out.push_str("__");
        } else {
            out.push_str(&format!("_{:02X}_", c as u32));
        }
    }
    out
}

/// A check run on the plan before anything is written (e.g. free space); an error stops the
/// pull with the repo untouched.
#[derive(Clone)]
pub struct Preflight(pub std::sync::Arc<PreflightFn>);

/// The check itself.
pub type PreflightFn = dyn Fn(&PullPlan) -> Result<()> + Send + Sync;

impl std::fmt::Debug for Preflight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Preflight(..)")
    }
}

/// Options for [`pull`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PullOptions {
    pub skopeo: SkopeoOptions,
    /// Layers read at once (0: [`DEFAULT_JOBS`]).
    pub jobs: usize,
    pub preflight: Option<Preflight>,
}

/// One layer of the plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedLayer {
    pub index: usize,
    pub digest: String,
    /// The digest of the uncompressed layer (the layer cache's key).
    pub diff_id: String,
    pub size: u64,
    /// "ostree" or "derived".
    pub kind: &'static str,
    /// "present" (already in the repo) or "fetched".
    pub action: &'static str,
}

/// What [`pull`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PullReport {
    pub imgref: String,
    pub manifest_digest: String,
    pub base_commit: Option<String>,
    pub merged_commit: String,
    pub image_ref: String,
    pub layers: Vec<PlannedLayer>,
    pub bytes_to_fetch: u64,
    /// How the layers were read: "oci-layout", "image-proxy" (only the layers fetched) or
    /// "staged-copy" (skopeo copied every blob first).
    pub read_via: &'static str,
    /// What the base allows besides usr, etc and var (its prepare-root.conf).
    pub path_policy: PathPolicy,
    pub policy: PolicyReport,
}

fn commit_complete(repo: &ostree::Repo, c: &str) -> bool {
    matches!(repo.load_commit(c), Ok((_, state)) if !state.contains(ostree::RepoCommitState::PARTIAL))
}

/// `YYYY-MM-DDTHH:MM:SS…` ─▶ Unix seconds (UTC; fractions and zones after the seconds ignored).
pub fn parse_timestamp(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// Where a commit's root-filesystem setup is configured (the `/etc` copy wins, as in
/// ostree-prepare-root).
const PREPARE_ROOT: [&str; 2] = [
    "usr/etc/ostree/prepare-root.conf",
    "usr/lib/ostree/prepare-root.conf",
];

/// The path policy base commit `c` asks for (its prepare-root.conf).
fn base_path_policy(repo: &ostree::Repo, c: &str) -> Result<PathPolicy> {
    let (root, _) = repo
        .read_commit(c, gio::Cancellable::NONE)
        .with_context(|| format!("reading base commit {c}"))?;
    for p in PREPARE_ROOT {
        let f = root.resolve_relative_path(p);
        match f.load_contents(gio::Cancellable::NONE) {
            Ok((data, _)) => {
                return Ok(PathPolicy::from_prepare_root(&String::from_utf8_lossy(
                    &data,
                )));
            }
            Err(e) if e.matches(gio::IOErrorEnum::NotFound) => continue,
            Err(e) => {
                return Err(
                    anyhow::Error::from(e).context(format!("reading {p} of base commit {c}"))
                );
            }
        }
    }
    Ok(PathPolicy::default())
}

/// For each derived layer, the layer commit the cache holds for it under `policy`.
fn derived_in_cache(
    repo: &ostree::Repo,
    src: &super::source::Source,
    n: usize,
    policy: PathPolicy,
) -> Result<Vec<Option<(String, layer_cache::LayerMeta)>>> {
    (n..src.layers().len())
        .map(|i| {
            let (digest, diff_id) = src.layer_ids(i)?;
            layer_cache::lookup(repo, diff_id, digest, layer_cache::LayerKind::Tree, policy)
        })
        .collect()
}

/// What a pull would fetch, read from the manifest without writing anything.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PullPlan {
    pub layers_to_fetch: usize,
    /// Compressed bytes to read.
    pub bytes_to_fetch: u64,
    /// Rough bytes the import will write (uncompressed layers as they are, compressed ones
    /// counted three times).
    pub estimated_bytes: u64,
}

/// Pull `imgref` into the repository at `repo_path`.
pub fn pull(
    repo_path: &Path,
    imgref: &OstreeImageReference,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<PullReport> {
    let repo = crate::commit::open_repo(repo_path)?;
    progress.phase("reading the image");
    let src = crate::sigverify::open_source(imgref, &opts.skopeo)?;
    let name = imgref.imgref.to_string();
    let n = src.ostree_layer_count(&name)?;
    let base = src.ostree_commit().filter(|_| n > 0).map(str::to_string);
    let base_present = base.as_deref().is_some_and(|c| commit_complete(&repo, c));
    // What the repo holds already: the whole base, chunk layers as object sets, derived layers
    // as layer commits (all keyed by diff_id).
    let chunk_cached = if base.is_some() && !base_present {
        src.cached_chunks(&repo, n)?
    } else {
        vec![false; n]
    };
    // The base's prepare-root.conf decides what else than usr, etc and var a derived layer
    // may bring; a base not in the repo yet is read again once imported.
    let mut path_policy = match &base {
        Some(c) if base_present => base_path_policy(&repo, c)?,
        _ => PathPolicy::default(),
    };
    let mut derived_cached = derived_in_cache(&repo, &src, n, path_policy)?;
    let mut plan = Vec::new();
    for (i, l) in src.layers().iter().enumerate() {
        let ostree = i < n;
        let present = if ostree {
            base_present || chunk_cached[i]
        } else {
            derived_cached[i - n].is_some()
        };
        plan.push(PlannedLayer {
            index: i,
            digest: src.layer_ids(i)?.0.to_string(),
            diff_id: src.layer_ids(i)?.1.to_string(),
            size: l["size"].as_u64().unwrap_or_default(),
            kind: if ostree { "ostree" } else { "derived" },
            action: if present { "present" } else { "fetched" },
        });
    }
    let fetched_bytes = |plan: &[PlannedLayer]| -> u64 {
        plan.iter()
            .filter(|p| p.action == "fetched")
            .map(|p| p.size)
            .sum()
    };
    let mut bytes_to_fetch = fetched_bytes(&plan);
    progress.plan(&serde_json::json!({ "layers": plan, "bytes_to_fetch": bytes_to_fetch }));
    if let Some(Preflight(check)) = &opts.preflight {
        let fetched: Vec<&Value> = src
            .layers()
            .iter()
            .zip(&plan)
            .filter(|(_, p)| p.action == "fetched")
            .map(|(l, _)| l)
            .collect();
        let estimated_bytes = fetched
            .iter()
            .map(|l| {
                let size = l["size"].as_u64().unwrap_or(0);
                if l["mediaType"].as_str().unwrap_or("").ends_with(".tar") {
                    size
                } else {
                    size.saturating_mul(3)
                }
            })
            .sum();
        check(&PullPlan {
            layers_to_fetch: fetched.len(),
            bytes_to_fetch,
            estimated_bytes,
        })?;
    }
    let image_ref = format!("{IMAGE_REF_PREFIX}{}", escape_ref(&name));

    crate::sigverify::verify_base(&repo, imgref, &src, base.as_deref())?;
    let r = crate::commit::in_transaction(&repo, |partials| -> Result<(String, PolicyReport)> {
        let jobs = if opts.jobs == 0 {
            DEFAULT_JOBS
        } else {
            opts.jobs
        };
        if base.is_some() && !base_present {
            if let Some(c) = src.ostree_commit() {
                partials.note(c);
            }
            src.import_ostree_layers(&repo, n, &chunk_cached, jobs, partials, progress)?;
            if let Some(c) = &base {
                let p = base_path_policy(&repo, c)?;
                if p != path_policy {
                    path_policy = p;
                    derived_cached = derived_in_cache(&repo, &src, n, p)?;
                    for (l, c) in plan.iter_mut().skip(n).zip(&derived_cached) {
                        l.action = if c.is_some() { "present" } else { "fetched" };
                    }
                    bytes_to_fetch = fetched_bytes(&plan);
                }
            }
        }
        let manifest_json = serde_json::to_string(&src.manifest)?;
        let config_json = serde_json::to_string(&src.config)?;
        let derived = src.layers().len() - n;
        if derived == 0 {
            let c = base
                .clone()
                .ok_or_else(|| anyhow!("{name}: the image has no layers"))?;
            // Keep any detached metadata (signatures) and add the image's documents.
            let dict = glib::VariantDict::new(
                repo.read_commit_detached_metadata(&c, gio::Cancellable::NONE)?
                    .as_ref(),
            );
            dict.insert_value(META_MANIFEST_DIGEST, &src.manifest_digest.to_variant());
            dict.insert_value(META_MANIFEST, &manifest_json.to_variant());
            dict.insert_value(META_CONFIG, &config_json.to_variant());
            repo.write_commit_detached_metadata(&c, Some(&dict.end()), gio::Cancellable::NONE)?;
            repo.transaction_set_ref(None, &image_ref, Some(&c));
            return Ok((c, PolicyReport::default()));
        }
        // The derived layers the cache lacks, read on `jobs` threads (each into a layer
        // commit of its own), then laid over the base in order.
        let to_read: Vec<&PlannedLayer> = plan
            .iter()
            .skip(n)
            .zip(&derived_cached)
            .filter(|(_, c)| c.is_none())
            .map(|(p, _)| p)
            .collect();
        let shared = std::sync::Mutex::new(repo.clone());
        let read = crate::workers::try_map(jobs, &to_read, |p| {
            let repo = shared
                .lock()
                .map_err(|_| anyhow!("repo handle poisoned"))?
                .clone();
            let (tree, verified) = src.read_layer(p.index, progress, |r, desc| {
                layer_to_tree_with(&repo, r, desc, path_policy)
            })?;
            let (c, meta) =
                layer_cache::write_tree(&repo, &tree, &p.diff_id).with_context(|| {
                    format!(
                        "layer {} ({}): recording it in the layer cache",
                        p.index, p.digest
                    )
                })?;
            partials.mark(&repo, &c)?;
            Ok((c, meta, verified))
        })?;
        let mut read = read.into_iter();
        let mut merge = TreeMerge::new(&repo, base.as_deref())?;
        for (p, cached) in plan.iter().skip(n).zip(derived_cached) {
            let desc = format!("layer {} ({})", p.index, p.digest);
            let (commit, meta) = match cached {
                Some(c) => c,
                None => {
                    let (c, meta, verified) =
                        read.next().ok_or_else(|| anyhow!("{desc}: not read"))?;
                    layer_cache::set_refs(&repo, &p.diff_id, &verified, &c);
                    (c, meta)
                }
            };
            merge.apply_layer(&commit, &meta, &desc)?;
        }
        merge.remove_builder_artifacts()?;
        let root = repo.write_mtree(&merge.root, gio::Cancellable::NONE)?;
        let root = root
            .downcast_ref::<ostree::RepoFile>()
            .ok_or_else(|| anyhow!("write_mtree did not return a RepoFile"))?;
        let dict = glib::VariantDict::new(None);
        dict.insert_value(META_MANIFEST_DIGEST, &src.manifest_digest.to_variant());
        dict.insert_value(META_MANIFEST, &manifest_json.to_variant());
        dict.insert_value(META_CONFIG, &config_json.to_variant());
        dict.insert_value(
            META_IMPORTER,
            &format!("ostree-bridge {}", env!("CARGO_PKG_VERSION")).to_variant(),
        );
        let ts = src.manifest["annotations"][crate::labels::OCI_CREATED]
            .as_str()
            .or(src.config["created"].as_str())
            .and_then(parse_timestamp)
            .unwrap_or(0);
        let c = repo.write_commit_with_time(
            base.as_deref(),
            Some(&format!("Merged image {name}")),
            None,
            Some(&dict.end()),
            root,
            ts,
            gio::Cancellable::NONE,
        )?;
        partials.mark(&repo, &c)?;
        repo.transaction_set_ref(None, &image_ref, Some(&c));
        Ok((c.to_string(), merge.report))
    });
    let (merged_commit, policy) = r.with_context(|| format!("pulling {imgref}"))?;
    Ok(PullReport {
        imgref: imgref.to_string(),
        manifest_digest: src.manifest_digest.clone(),
        base_commit: base,
        merged_commit,
        image_ref,
        layers: plan,
        bytes_to_fetch,
        read_via: src.read_via(),
        path_policy,
        policy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_refs_like_ostree_ext() {
        assert_eq!(
            escape_ref("docker://quay.io/a/b:latest"),
            "docker_3A__2F__2F_quay_2E_io/a/b_3A_latest"
        );
        assert_eq!(escape_ref("oci:/x_y/"), "oci_3A__2F_x__y_2F_");
    }

    #[test]
    fn parses_timestamps() {
        assert_eq!(parse_timestamp("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00.5Z"), Some(0));
        assert_eq!(parse_timestamp("nope"), None);
    }
}
