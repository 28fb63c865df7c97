//! Opening an image for reading, and reading its layers:
//!
//! ```text
//! oci:DIR              in place: blobs are local files (digest checked before parsing)
//! containers-storage:, docker://, oci-archive:, dir:
//!                      skopeo's image proxy (proxy.rs): manifest and config read once, then
//!                      only the layers the import needs, streamed; a containers-storage layer
//!                      the store no longer holds as named is read by its diff_id
//! docker-archive:, a manifest the proxy converts, ostree-image-signed: (policy enforced)
//!                      staged whole by `skopeo copy` into a temporary layout, then as oci:
//! ```

use crate::imgref::{ImageReference, Transport};
use crate::labels::{FINAL_DIFFID, OSTREE_COMMIT};
use crate::oci::blob_read::VerifiedLayer;
use crate::oci::ocidir::OciDir;
use crate::proxy::{ImageProxy, OpenedImage, ProxyOptions};
use crate::transport::{self, SkopeoOptions};
use anyhow::{anyhow, bail, Context, Result};
use cap_std::fs::Dir;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Largest manifest or config read.
const MAX_DOC: u64 = 4 << 20;

/// A layer stream, whichever way its bytes arrive.
pub type LayerStream = VerifiedLayer<Box<dyn Read + Send>>;

/// Where the blobs come from.
enum Blobs {
    Local {
        oci: OciDir,
        _staged: Option<crate::scratch::Scratch>,
    },
    Proxy {
        proxy: ImageProxy,
        img: OpenedImage,
        cstor: bool,
    },
}

/// An image opened for reading, with its documents read and verified.
pub struct Source {
    blobs: Blobs,
    pub manifest_digest: String,
    pub manifest: Value,
    pub config: Value,
}

/// The proxy cannot serve this image as its source has it; stage it instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unstreamable(String);

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// How many leading layers of the image with these documents are ostree layers (0 for a plain
/// OCI image): the ones up to the `ostree.final-diffid` label. Pure, for [`Source`] and the fuzz
/// targets.
pub fn ostree_layer_count(manifest: &Value, config: &Value, imgref: &str) -> Result<usize> {
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
    if config["config"]["Labels"][OSTREE_COMMIT].as_str().is_none() {
        return Ok(0);
    }
    if layers.is_empty() {
        bail!("{imgref}: the image has no layers");
    }
    match config["config"]["Labels"][FINAL_DIFFID].as_str() {
        Some(d) => diff_ids
            .iter()
            .position(|x| x.as_str() == Some(d))
            .map(|i| i + 1)
            .ok_or_else(|| anyhow!("{imgref}: {FINAL_DIFFID} {d} is not among the config's diff_ids")),
        // Old single-layer images carry no final-diffid label.
        None if layers.len() == 1 => Ok(1),
        None => bail!("{imgref}: several layers but no {FINAL_DIFFID} label: cannot tell the ostree layers apart"),
    }
}

impl Source {
    /// How the blobs are read: "oci-layout" (in place), "image-proxy" (only the layers an
    /// import needs, streamed) or "staged-copy" (every blob copied by skopeo first).
    pub fn read_via(&self) -> &'static str {
        match &self.blobs {
            Blobs::Local { _staged: None, .. } => "oci-layout",
            Blobs::Local { .. } => "staged-copy",
            Blobs::Proxy { .. } => "image-proxy",
        }
    }

    pub fn open(r: &ImageReference, opts: &SkopeoOptions) -> Result<Self> {
        if r.transport == Transport::OciDir && !opts.enforce_policy {
            return Self::open_oci(r);
        }
        let streamable = !opts.enforce_policy
            && !matches!(r.transport, Transport::OciDir | Transport::DockerArchive);
        if streamable {
            match Self::open_proxy(r, opts) {
                Ok(s) => return Ok(s),
                // Staging reads the same image another way.
                Err(e) if e.downcast_ref::<Unstreamable>().is_some() => {}
                Err(e) => return Err(e),
            }
        }
        Self::open_staged(r, opts)
    }

    fn open_oci(r: &ImageReference) -> Result<Self> {
        let (p, tag) = r.path_and_tag();
        if !Path::new(p).join("index.json").is_file() {
            bail!("{r}: no OCI image layout at {p} (no index.json)");
        }
        let dir = Dir::open_ambient_dir(p, cap_std::ambient_authority())
            .with_context(|| format!("opening {p}"))?;
        let oci = OciDir::open_existing(dir)?;
        let desc = oci.find_manifest(tag)?;
        Self::from_layout(oci, desc, None)
    }

    /// A blob of the layout that must match its descriptor's digest and size.
    fn read_described(oci: &OciDir, what: &str, digest: &str, size: u64) -> Result<Vec<u8>> {
        let data = oci
            .read_blob(digest, MAX_DOC)
            .with_context(|| format!("reading the {what}"))?;
        if data.len() as u64 != size {
            bail!(
                "the {what} {digest} is {} bytes, its descriptor says {size}",
                data.len()
            );
        }
        Ok(data)
    }

    fn from_layout(
        oci: OciDir,
        desc: crate::oci::BlobRef,
        staged: Option<crate::scratch::Scratch>,
    ) -> Result<Self> {
        let digest = desc.digest;
        let raw = Self::read_described(&oci, "manifest", &digest, desc.size)?;
        let manifest: Value = serde_json::from_slice(&raw).context("parsing the manifest")?;
        let cdigest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| anyhow!("the manifest names no config"))?;
        let csize = manifest["config"]["size"]
            .as_u64()
            .ok_or_else(|| anyhow!("the manifest gives no config size"))?;
        let raw = Self::read_described(&oci, "config", cdigest, csize)?;
        let config: Value = serde_json::from_slice(&raw).context("parsing the config")?;
        Ok(Source {
            blobs: Blobs::Local {
                oci,
                _staged: staged,
            },
            manifest_digest: digest,
            manifest,
            config,
        })
    }

    /// Every blob through `skopeo copy` into a temporary layout first.
    fn open_staged(r: &ImageReference, opts: &SkopeoOptions) -> Result<Self> {
        // The digest the source itself gives its manifest (what `upgrade` compares later).
        let raw = transport::read_manifest_bytes(r, opts)?;
        let source_digest = sha256(&raw);
        let tmp = crate::scratch::Scratch::new("ostree-container-src-")?;
        let preserved = transport::skopeo_copy_to_oci(&r.to_string(), tmp.path(), opts)?;
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority())?;
        let oci = OciDir::open_existing(dir)?;
        let copied = oci.find_manifest(None)?;
        // The copy kept the manifest: it must be the one inspected a moment before.
        if preserved && copied.digest != source_digest {
            bail!(
                "{r} changed while it was read (manifest {source_digest}, then {}); try again",
                copied.digest
            );
        }
        let mut s = Self::from_layout(oci, copied, Some(tmp))?;
        s.manifest_digest = source_digest;
        Ok(s)
    }

    /// Manifest and config through skopeo's image proxy; layers later, one by one.
    fn open_proxy(r: &ImageReference, opts: &SkopeoOptions) -> Result<Self> {
        let defaults = ProxyOptions::default();
        let po = ProxyOptions {
            skopeo: opts.clone(),
            idle_timeout: opts.idle_timeout.unwrap_or(defaults.idle_timeout),
            ..defaults
        };
        let proxy = ImageProxy::new(po)?;
        let name = r.to_string();
        let img = proxy.open_image(&name)?;
        let (digest, raw) = proxy.manifest(&img)?;
        if sha256(&raw) != digest {
            return Err(Unstreamable(format!(
                "the proxy hands out a converted manifest (digest {digest})"
            ))
            .into());
        }
        let manifest: Value =
            serde_json::from_slice(&raw).with_context(|| format!("parsing the manifest of {r}"))?;
        if manifest.get("manifests").is_some() {
            bail!("{r} is an image index, not a single image manifest");
        }
        let cdigest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| anyhow!("the manifest of {r} names no config"))?
            .to_string();
        let csize = manifest["config"]["size"]
            .as_u64()
            .ok_or_else(|| anyhow!("the manifest of {r} gives no config size"))?;
        if csize > MAX_DOC {
            bail!("the config of {r} is {csize} bytes, over the {MAX_DOC} byte limit");
        }
        let mut raw_config = Vec::new();
        let got = proxy.blob(&img, &cdigest, csize).and_then(|mut b| {
            b.read_to_end(&mut raw_config)?;
            b.finish()
        });
        if let Err(e) = got {
            return Err(Unstreamable(format!("the config blob is not served ({e:#})")).into());
        }
        if sha256(&raw_config) != cdigest {
            bail!("the config of {r} does not match its digest {cdigest}");
        }
        let config: Value = serde_json::from_slice(&raw_config)
            .with_context(|| format!("parsing the config of {r}"))?;
        Ok(Source {
            blobs: Blobs::Proxy {
                proxy,
                img,
                cstor: r.transport == Transport::ContainerStorage,
            },
            manifest_digest: digest,
            manifest,
            config,
        })
    }

    pub fn layers(&self) -> &[Value] {
        self.manifest["layers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn diff_ids(&self) -> &[Value] {
        self.config["rootfs"]["diff_ids"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The commit the image encapsulates, when it is an ostree image.
    pub fn ostree_commit(&self) -> Option<&str> {
        self.config["config"]["Labels"][OSTREE_COMMIT].as_str()
    }

    /// How many leading layers are ostree layers (0 for a plain OCI image).
    pub fn ostree_layer_count(&self, imgref: &str) -> Result<usize> {
        ostree_layer_count(&self.manifest, &self.config, imgref)
    }

    /// Layer `i`'s blob digest and diff_id, as the manifest and config name them.
    pub fn layer_ids(&self, i: usize) -> Result<(&str, &str)> {
        let digest = self.layers().get(i).and_then(|l| l["digest"].as_str());
        let diff_id = self.diff_ids().get(i).and_then(|d| d.as_str());
        match (digest, diff_id) {
            (Some(d), Some(id)) => Ok((d, id)),
            (None, _) => bail!("layer {i} of the manifest has no digest"),
            (_, None) => bail!("the config has no diff_id string for layer {i}"),
        }
    }

    /// Which of the first `n` (ostree) layers the layer cache already holds as object sets
    /// (never layer 0, the commit layer).
    pub fn cached_chunks(&self, repo: &ostree::Repo, n: usize) -> Result<Vec<bool>> {
        (0..n)
            .map(|i| {
                if i == 0 {
                    return Ok(false);
                }
                let (digest, diff_id) = self.layer_ids(i)?;
                Ok(crate::layer_cache::lookup(
                    repo,
                    diff_id,
                    digest,
                    crate::layer_cache::LayerKind::Objects,
                    Default::default(),
                )?
                .is_some())
            })
            .collect()
    }

    /// Import the first `n` (ostree) layers into `repo`'s open transaction, check the commit
    /// against the `ostree.commit` label and for completeness; the commit and per-layer stats.
    /// Chunk layers `i` with `cached[i]` are not read: the layer cache holds their objects.
    /// Every layer read is recorded in the layer cache (refs set in the transaction, after its
    /// digests were verified).
    pub fn import_ostree_layers(
        &self,
        repo: &ostree::Repo,
        n: usize,
        cached: &[bool],
        jobs: usize,
        partials: &crate::commit::Partials,
        progress: &dyn crate::progress::Progress,
    ) -> Result<(String, Vec<crate::tar::tar_to_commit::LayerStats>)> {
        use crate::layer_cache;
        use crate::tar::tar_to_commit::{LayerRole, LayerStats, ObjectImporter};
        let n = n.min(self.layers().len());
        let mut imp = ObjectImporter::new(repo);
        let r = (|| -> Result<(Vec<LayerStats>, String)> {
            // The commit layer first: the commit, its metadata and the structure.
            let (mut first, verified0) = self.read_layer(0, progress, |r, desc| {
                imp.import_layer(r, LayerRole::Commit, desc)
            })?;
            first.objects = Vec::new();
            let want = self.ostree_commit().unwrap_or_default();
            let got = imp.commit().unwrap_or_default();
            if got != want {
                bail!(
                    "the image's {OSTREE_COMMIT} label says {want}, its commit layer holds {got}"
                );
            }
            // Then the chunks the cache lacks, each self-contained, on `jobs` threads sharing
            // the repo's transaction (libostree's writes are thread-safe within it).
            let todo: Vec<usize> = (1..n)
                .filter(|&i| !cached.get(i).copied().unwrap_or(false))
                .collect();
            // Repo is Send, not Sync: each worker takes its own handle to the same repo.
            let shared = std::sync::Mutex::new(repo.clone());
            let read = crate::workers::try_map(jobs, &todo, |&i| {
                let (_, diff_id) = self.layer_ids(i)?;
                let repo = shared
                    .lock()
                    .map_err(|_| anyhow!("repo handle poisoned"))?
                    .clone();
                let mut chunk = ObjectImporter::new(&repo);
                let (mut st, verified) = self.read_layer(i, progress, |r, desc| {
                    chunk.import_layer(r, LayerRole::Chunk, desc)
                })?;
                let c =
                    layer_cache::write_objects(&repo, &st.objects, diff_id).with_context(|| {
                        format!("layer {i} ({verified}): recording it in the layer cache")
                    })?;
                partials.mark(&repo, &c)?;
                st.objects = Vec::new();
                Ok((i, st, verified, c))
            })?;
            let mut stats = vec![first];
            let mut read = read.into_iter().peekable();
            for i in 1..n {
                match read.next_if(|(j, ..)| *j == i) {
                    Some((_, st, verified, c)) => {
                        let (_, diff_id) = self.layer_ids(i)?;
                        layer_cache::set_refs(repo, diff_id, &verified, &c);
                        stats.push(st);
                    }
                    None => stats.push(LayerStats {
                        cached: true,
                        ..Default::default()
                    }),
                }
            }
            Ok((stats, verified0))
        })();
        match r {
            Ok((stats, verified0)) => {
                // The partial mark stays until the transaction is committed
                // (commit::in_transaction).
                let (commit, _) = imp.finish()?;
                let (_, diff_id) = self.layer_ids(0)?;
                layer_cache::set_refs(repo, diff_id, &verified0, &commit);
                Ok((commit, stats))
            }
            Err(e) => Err(e),
        }
    }

    /// Layer `i` as a verified tar stream. A local blob's digest and size are checked before a
    /// byte of it is parsed, and again, with the diff_id, at `finish`; a streamed one at
    /// `finish` (see [`Source::read_layer`]). A containers-storage layer read by its diff_id
    /// comes uncompressed, and its stream's digest is the diff_id.
    pub fn layer(&self, i: usize, max_uncompressed: u64) -> Result<LayerStream> {
        let (digest, diff_id) = self.layer_ids(i)?;
        let l = &self.layers()[i];
        let size = l["size"]
            .as_u64()
            .ok_or_else(|| anyhow!("layer {i} has no size"))?;
        let mt = l["mediaType"].as_str().unwrap_or_default();
        match &self.blobs {
            Blobs::Local { oci, .. } => {
                let mut pre =
                    crate::oci::blob_read::HashingReader::new(oci.open_blob(digest)?, Some(size));
                let (got, n) = pre.finish_digest()?;
                if n != size {
                    bail!("blob {digest} is {n} bytes, the manifest says {size}");
                }
                if got != digest {
                    bail!("blob {digest} has digest {got}");
                }
                let f: Box<dyn Read + Send> = Box::new(oci.open_blob(digest)?);
                VerifiedLayer::new(f, mt, digest, size, Some(diff_id), max_uncompressed)
            }
            Blobs::Proxy { proxy, img, cstor } => match proxy.blob(img, digest, size) {
                Ok(b) => VerifiedLayer::new(
                    Box::new(b),
                    mt,
                    digest,
                    size,
                    Some(diff_id),
                    max_uncompressed,
                ),
                Err(e) if *cstor && digest != diff_id => {
                    let b = proxy.blob_by_diff_id(img, diff_id).with_context(|| {
                        format!("{digest} is not in the store as named ({e:#}); by its diff_id")
                    })?;
                    let n = b.size();
                    VerifiedLayer::new(
                        Box::new(b),
                        crate::labels::media::LAYER_TAR,
                        diff_id,
                        n,
                        Some(diff_id),
                        max_uncompressed,
                    )
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Read layer `i` with `parse`, then verify it; reports progress. Returns what `parse`
    /// made and the blob digest that was verified (the diff_id when the layer was read by it).
    /// When parsing fails on a blob that is also corrupt, the digest mismatch is the error.
    pub fn read_layer<T>(
        &self,
        i: usize,
        progress: &dyn crate::progress::Progress,
        parse: impl FnOnce(&mut dyn Read, &str) -> Result<T>,
    ) -> Result<(T, String)> {
        let (digest, _) = self.layer_ids(i)?;
        let desc = format!("layer {i} ({digest})");
        let size = self.layers()[i]["size"].as_u64().unwrap_or(0);
        progress.layer_start(i, &desc, size);
        let mut v = self
            .layer(i, super::unencapsulate::MAX_LAYER_UNCOMPRESSED)
            .with_context(|| desc.clone())?;
        let verified = v.digest().to_string();
        let parsed = parse(
            &mut crate::progress::ReadProgress::new(&mut v, i, progress),
            &desc,
        );
        let checked = v.finish().with_context(|| desc.clone());
        let t = match (parsed, checked) {
            (Ok(t), Ok(_)) => t,
            (Err(p), Ok(_)) => return Err(p),
            (Ok(_), Err(c)) => return Err(c),
            // A corrupt blob is the news; otherwise both say the same (the source failed).
            (Err(p), Err(c))
                if c.downcast_ref::<crate::oci::blob_read::Mismatch>()
                    .is_some() =>
            {
                bail!("{c:#} (parsing it failed first: {p:#})")
            }
            (Err(p), Err(_)) => return Err(p),
        };
        progress.layer_done(i);
        Ok((t, verified))
    }
}
