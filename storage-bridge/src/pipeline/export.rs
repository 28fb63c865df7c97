//! ostree commit ─▶ OCI image (containers-storage, oci, oci-archive, docker-archive, dir,
//! registry).
//!
//! ```text
//! resolve rev ─▶ CommitTree::load ─▶ query objects ─▶ sources::assign ─▶ chunking::pack
//!   ─▶ layers in parallel (tar ─▶ compress ─▶ blob under a temp name ─▶ renamed to digest)
//!   ─▶ config + manifest ─▶ index.json ─▶ publish (rename the staged dir, or skopeo copy)
//! ```
//! Nothing is visible under the destination name until the image is complete.

use crate::chunking::{self, sources, Component, PriorLayout};
use crate::commit::{self, CommitTree, FileMeta};
use crate::compression::Compression;
use crate::imgref::{ImageReference, Transport};
use crate::oci::config::{self, ImageInputs, LayerEntry};
use crate::oci::layer::LayerBlob;
use crate::oci::ocidir::OciDir;
use crate::progress::Progress;
use crate::scratch::Scratch;
use crate::tar::commit_to_tar::{write_layer, LayerContent};
use crate::transport::{self, SkopeoOptions};
use anyhow::{anyhow, bail, Context, Result};
use cap_std::fs::Dir;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// How to export.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ExportOptions {
    /// `--label K=V`.
    pub labels: BTreeMap<String, String>,
    /// `--cmd`.
    pub cmd: Option<Vec<String>>,
    /// `--config`: the container `config` object.
    pub base_config: Option<serde_json::Map<String, serde_json::Value>>,
    /// `--copymeta KEY`.
    pub copymeta: Vec<String>,
    /// `--copymeta-opt KEY`.
    pub copymeta_opt: Vec<String>,
    /// `--max-layers` (default 64, at least 4).
    pub max_layers: Option<u32>,
    /// `--prior-build`: keep that image's component → layer layout.
    pub prior_build: Option<ImageReference>,
    /// `--compression`; None picks gzip, or none for containers-storage.
    pub compression: Option<Compression>,
    /// `--contentmeta`.
    pub contentmeta: Option<sources::ContentMeta>,
    /// Registry and store options for skopeo.
    pub skopeo: SkopeoOptions,
    /// Worker threads for layers; None = all cores.
    pub jobs: Option<usize>,
}

/// One written layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub index: usize,
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub uncompressed_size: u64,
    pub media_type: &'static str,
    pub description: String,
    /// Components of a chunk layer; empty for layer 0 and the reserved layer.
    pub components: Vec<String>,
}

/// What an export did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub commit: String,
    pub destination: String,
    /// Manifest digest at the destination.
    pub manifest_digest: String,
    pub config_digest: String,
    pub compression: String,
    pub layers: Vec<LayerReport>,
    pub total_size: u64,
    pub chunking: sources::SourceReport,
    pub prior_build_used: bool,
    pub warnings: Vec<String>,
}

fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Estimated tar bytes of a content object with its checkout paths (for progress totals).
fn estimate(meta: &FileMeta, npaths: usize) -> u64 {
    let data = meta.size.div_ceil(512) * 512;
    data + 512 * (3 + npaths as u64) + meta.xattrs_raw.len() as u64
}

/// Export commit `rev` of the repository at `repo_path` to `dest`.
pub fn export(
    repo_path: &Path,
    rev: &str,
    dest: &ImageReference,
    opts: &ExportOptions,
    progress: &dyn Progress,
) -> Result<ExportReport> {
    if dest.transport != Transport::OciDir {
        transport::skopeo()?;
    }
    let mut warnings = Vec::new();
    let max_layers = opts.max_layers.unwrap_or(chunking::DEFAULT_MAX_LAYERS);
    if max_layers < chunking::MIN_LAYERS {
        bail!(
            "--max-layers {max_layers}: at least {} layers are needed",
            chunking::MIN_LAYERS
        );
    }

    progress.phase("reading commit");
    let repo = commit::open_repo(repo_path)?;
    let checksum = commit::resolve_commit(&repo, rev)?;
    let tree = CommitTree::load(&repo, &checksum)?;
    let paths = tree.content_paths();
    let mut metas: HashMap<String, FileMeta> = HashMap::with_capacity(paths.len());
    for csum in paths.keys() {
        metas.insert(csum.clone(), commit::query_file(&repo, csum)?);
    }

    progress.phase("planning layers");
    let (assignment, source_report) =
        sources::assign(&repo, &tree, &paths, &metas, opts.contentmeta.as_ref())?;
    warnings.extend(source_report.warnings.iter().cloned());
    let sizes: HashMap<String, u64> = metas.iter().map(|(k, m)| (k.clone(), m.size)).collect();
    let components = chunking::components_from(&assignment, &sizes);
    let prior: Option<PriorLayout> = match &opts.prior_build {
        None => None,
        Some(r) => {
            let m = transport::read_manifest(r, &opts.skopeo)
                .with_context(|| format!("reading the prior build {r}"))?;
            match transport::prior_layout(&m) {
                Ok(l) => Some(l),
                Err(e) => {
                    warnings.push(format!(
                        "prior build {r} is not usable ({e}); laying out afresh"
                    ));
                    None
                }
            }
        }
    };
    let packing = chunking::pack(&components, max_layers, prior.as_ref());
    if let Some(why) = &packing.prior_ignored {
        warnings.push(format!("prior build layout ignored: {why}"));
    }
    let prior_build_used = prior.is_some() && packing.prior_ignored.is_none();
    let plan = layer_plan(&components, &packing.bins);

    let compression = match (dest.transport, opts.compression) {
        (Transport::ContainerStorage, Some(c)) if c != Compression::None => {
            warnings.push(format!(
                "containers-storage stores layers uncompressed: --compression {c} is not applied"
            ));
            Compression::None
        }
        (Transport::ContainerStorage, _) => Compression::None,
        (_, Some(c)) => c,
        (_, None) => Compression::Gzip,
    };

    let inputs = ImageInputs {
        commit: checksum.clone(),
        meta: tree.meta.clone(),
        labels: {
            let mut l = opts
                .contentmeta
                .as_ref()
                .and_then(|c| c.labels.clone())
                .unwrap_or_default();
            l.extend(opts.labels.clone());
            l
        },
        copymeta: opts.copymeta.clone(),
        copymeta_opt: opts.copymeta_opt.clone(),
        cmd: opts.cmd.clone(),
        base_config: opts.base_config.clone(),
        created: opts.contentmeta.as_ref().and_then(|c| c.created.clone()),
        architecture: None,
    };
    // Fail on bad --copymeta before writing anything.
    config::labels_for(&inputs)?;

    let staged = Staging::new(dest)?;
    let oci = OciDir::ensure(staged.dir()?)?;
    let result = (|| -> Result<(String, config::LayerEntry, Vec<LayerEntry>, crate::oci::BlobRef)> {
        progress.phase("writing layers");
        let blobs = write_layers(repo_path, &tree, &paths, &metas, &plan, compression, &oci, opts.jobs, progress)?;
        let entries: Vec<LayerEntry> = plan
            .iter()
            .zip(blobs)
            .enumerate()
            .map(|(i, (p, blob))| LayerEntry {
                blob,
                description: if i == 0 {
                    config::commit_description(&inputs)
                } else {
                    config::chunk_description(&p.components)
                },
                components: (i > 0).then(|| p.components.clone()),
            })
            .collect();
        let (cfg, labels) = config::image_config(&inputs, &entries)?;
        let cfg_ref = oci.write_blob(&config::to_canonical_json(&cfg)?)?;
        let manifest = config::image_manifest(&cfg_ref, &entries, &labels);
        let m_ref = oci.write_blob(&config::to_canonical_json(&manifest)?)?;
        oci.set_manifest(&m_ref, staged.tag())?;
        let first = entries[0].clone();
        Ok((m_ref.digest.clone(), first, entries, cfg_ref))
    })();
    let (mut manifest_digest, _first, entries, cfg_ref) = match result {
        Ok(r) => r,
        Err(e) => {
            if staged.in_place() {
                oci.abort();
            }
            return Err(e);
        }
    };
    drop(oci);
    progress.phase("publishing");
    if let Some(d) = staged.publish(&opts.skopeo)? {
        manifest_digest = d;
    }

    let layers: Vec<LayerReport> = entries
        .iter()
        .enumerate()
        .map(|(index, e)| LayerReport {
            index,
            digest: e.blob.blob.digest.clone(),
            diff_id: e.blob.diff_id.clone(),
            size: e.blob.blob.size,
            uncompressed_size: e.blob.uncompressed_size,
            media_type: e.blob.media_type,
            description: e.description.clone(),
            components: e.components.clone().unwrap_or_default(),
        })
        .collect();
    Ok(ExportReport {
        commit: checksum,
        destination: dest.to_string(),
        manifest_digest,
        config_digest: cfg_ref.digest,
        compression: compression.to_string(),
        total_size: layers.iter().map(|l| l.size).sum(),
        layers,
        chunking: source_report,
        prior_build_used,
        warnings,
    })
}

/// A layer to write.
#[derive(Debug, Clone)]
struct PlannedLayer {
    content: LayerContent,
    components: Vec<String>,
}

fn layer_plan(components: &[Component], bins: &[Vec<usize>]) -> Vec<PlannedLayer> {
    let mut plan = vec![PlannedLayer {
        content: LayerContent {
            commit_structure: true,
            objects: Vec::new(),
        },
        components: Vec::new(),
    }];
    for bin in bins {
        let mut objects: Vec<String> = bin
            .iter()
            .flat_map(|&i| components[i].objects.iter().cloned())
            .collect();
        objects.sort();
        objects.dedup();
        let mut names: Vec<String> = bin.iter().map(|&i| components[i].name.clone()).collect();
        names.sort();
        plan.push(PlannedLayer {
            content: LayerContent {
                commit_structure: false,
                objects,
            },
            components: names,
        });
    }
    plan
}

#[allow(clippy::too_many_arguments)]
fn write_layers(
    repo_path: &Path,
    tree: &CommitTree,
    paths: &BTreeMap<String, Vec<String>>,
    metas: &HashMap<String, FileMeta>,
    plan: &[PlannedLayer],
    compression: Compression,
    oci: &OciDir,
    jobs: Option<usize>,
    progress: &dyn Progress,
) -> Result<Vec<LayerBlob>> {
    let est: Vec<u64> = plan
        .iter()
        .map(|p| {
            let base = if p.content.commit_structure {
                tree.dirs.len() as u64 * 1536
            } else {
                0
            };
            base + 512 * 270
                + p.content
                    .objects
                    .iter()
                    .map(|o| estimate(&metas[o], paths.get(o).map_or(0, Vec::len)))
                    .sum::<u64>()
        })
        .collect();
    for (i, p) in plan.iter().enumerate() {
        let name = if i == 0 {
            "ostree commit".to_string()
        } else {
            config::chunk_description(&p.components)
        };
        progress.layer_start(i, &name, est[i]);
    }
    // Largest first, so the last layer to finish is a small one.
    let mut order: Vec<usize> = (0..plan.len()).collect();
    order.sort_by(|&a, &b| est[b].cmp(&est[a]).then(a.cmp(&b)));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<LayerBlob>>>> =
        Mutex::new((0..plan.len()).map(|_| None).collect());
    let workers = jobs.unwrap_or_else(default_jobs).clamp(1, plan.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let repo = match commit::open_repo(repo_path) {
                    Ok(r) => r,
                    Err(e) => {
                        failed.store(true, Ordering::SeqCst);
                        if let Ok(mut r) = results.lock() {
                            if let Some(slot) = r.iter_mut().find(|s| s.is_none()) {
                                *slot = Some(Err(e));
                            }
                        }
                        return;
                    }
                };
                loop {
                    if failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&i) = order.get(k) else { return };
                    let on_bytes = |n: u64| progress.layer_bytes(i, n);
                    let r = oci
                        .write_layer(compression, &on_bytes, |w| {
                            write_layer(&repo, tree, paths, &plan[i].content, w).map(|_| ())
                        })
                        .with_context(|| {
                            if i == 0 {
                                "writing layer 0 (ostree commit)".to_string()
                            } else {
                                format!(
                                    "writing layer {i} ({})",
                                    config::chunk_description(&plan[i].components)
                                )
                            }
                        });
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    } else {
                        progress.layer_done(i);
                    }
                    if let Ok(mut res) = results.lock() {
                        res[i] = Some(r);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| anyhow!("layer results poisoned"))?;
    let mut out = Vec::with_capacity(plan.len());
    let mut first_err = None;
    for r in results {
        match r {
            Some(Ok(b)) => out.push(b),
            Some(Err(e)) => {
                first_err.get_or_insert(e);
            }
            None => {}
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    if out.len() != plan.len() {
        bail!("not every layer was written");
    }
    Ok(out)
}

/// Where the OCI layout is built, and how it becomes the destination.
enum Staging {
    /// An existing `oci:` directory, updated in place (blobs, then index.json).
    InPlace { path: PathBuf, tag: Option<String> },
    /// A new `oci:` directory, built beside it and renamed into place.
    NewOciDir {
        tmp: Scratch,
        path: PathBuf,
        tag: Option<String>,
    },
    /// Any other transport: built in a temp dir, then `skopeo copy`.
    Skopeo { tmp: Scratch, dest: ImageReference },
}

fn parent_of(p: &Path) -> Result<PathBuf> {
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        bail!(
            "{}: the parent directory {} does not exist",
            p.display(),
            parent.display()
        );
    }
    Ok(parent)
}

fn tempdir_in(parent: &Path) -> Result<Scratch> {
    Scratch::new_in(parent, ".ostree-container-")
}

impl Staging {
    fn new(dest: &ImageReference) -> Result<Self> {
        match dest.transport {
            Transport::OciDir => {
                let (p, tag) = dest.path_and_tag();
                let path = PathBuf::from(p);
                let tag = tag.map(str::to_string);
                if path.is_dir() {
                    Ok(Staging::InPlace { path, tag })
                } else if path.exists() {
                    bail!("{}: exists and is not a directory", path.display())
                } else {
                    let tmp = tempdir_in(&parent_of(&path)?)?;
                    Ok(Staging::NewOciDir { tmp, path, tag })
                }
            }
            Transport::OciArchive | Transport::DockerArchive | Transport::Dir => {
                let (p, _) = dest.path_and_tag();
                let parent = parent_of(Path::new(p))?;
                Ok(Staging::Skopeo {
                    tmp: tempdir_in(&parent)?,
                    dest: dest.clone(),
                })
            }
            _ => Ok(Staging::Skopeo {
                tmp: Scratch::new("ostree-container-")?,
                dest: dest.clone(),
            }),
        }
    }

    fn dir(&self) -> Result<Dir> {
        let p: &Path = match self {
            Staging::InPlace { path, .. } => path,
            Staging::NewOciDir { tmp, .. } => tmp.path(),
            Staging::Skopeo { tmp, .. } => tmp.path(),
        };
        Dir::open_ambient_dir(p, cap_std::ambient_authority())
            .with_context(|| format!("opening {}", p.display()))
    }

    fn tag(&self) -> Option<&str> {
        match self {
            Staging::InPlace { tag, .. } | Staging::NewOciDir { tag, .. } => tag.as_deref(),
            Staging::Skopeo { .. } => None,
        }
    }

    fn in_place(&self) -> bool {
        matches!(self, Staging::InPlace { .. })
    }

    /// Make the staged image visible under the destination name; the manifest digest there
    /// when it differs from ours (skopeo may convert).
    fn publish(self, opts: &SkopeoOptions) -> Result<Option<String>> {
        match self {
            Staging::InPlace { .. } => Ok(None),
            Staging::NewOciDir { tmp, path, .. } => {
                let staged = tmp.keep();
                std::fs::rename(&staged, &path).with_context(|| {
                    format!("renaming {} to {}", staged.display(), path.display())
                })?;
                Ok(None)
            }
            Staging::Skopeo { tmp, dest } => {
                let oci = tmp.path().to_path_buf();
                let digestfile = tmp.path().join(".digest");
                match dest.transport {
                    Transport::OciArchive | Transport::DockerArchive | Transport::Dir => {
                        let (p, tag) = dest.path_and_tag();
                        let final_path = PathBuf::from(p);
                        let parent = parent_of(&final_path)?;
                        let name = final_path
                            .file_name()
                            .ok_or_else(|| anyhow!("{p}: no file name"))?
                            .to_string_lossy()
                            .to_string();
                        let out =
                            parent.join(format!(".{name}.ostree-container-{}", std::process::id()));
                        let _cleanup = RemoveOnDrop(out.clone());
                        let mut target = format!("{}{}", dest.transport.prefix(), out.display());
                        if let Some(t) = tag {
                            target.push(':');
                            target.push_str(t);
                        }
                        let d = transport::skopeo_copy(&oci, None, &target, opts, &digestfile)?;
                        replace_path(&out, &final_path)?;
                        Ok(d)
                    }
                    _ => transport::skopeo_copy(&oci, None, &dest.to_string(), opts, &digestfile),
                }
            }
        }
    }
}

/// Removes a path (file or tree) when dropped, unless it is gone already.
struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.is_dir() {
            std::fs::remove_dir_all(&self.0).ok();
        } else {
            std::fs::remove_file(&self.0).ok();
        }
    }
}

/// Move `from` to `to`, replacing a file atomically, or a directory by rename-aside.
fn replace_path(from: &Path, to: &Path) -> Result<()> {
    if to.is_dir() && from.is_dir() {
        let aside = to.with_extension(format!("ostree-container-old-{}", std::process::id()));
        std::fs::rename(to, &aside)
            .with_context(|| format!("moving the old {} aside", to.display()))?;
        if let Err(e) = std::fs::rename(from, to) {
            std::fs::rename(&aside, to).ok();
            return Err(e).with_context(|| format!("renaming into {}", to.display()));
        }
        std::fs::remove_dir_all(&aside).ok();
        Ok(())
    } else {
        std::fs::rename(from, to).with_context(|| format!("renaming into {}", to.display()))
    }
}
