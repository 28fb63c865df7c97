//! The images an ostree repo holds (refs under `ostree/container/image/`): list, read their
//! stored manifest and config, remove them.

use super::pull::{IMAGE_REF_PREFIX, META_CONFIG, META_MANIFEST, META_MANIFEST_DIGEST};
use crate::commit::{open_repo, Repo};
use anyhow::{anyhow, bail, Context, Result};
use ostree::gio;
use ostree::glib;
use std::path::Path;

/// Undo [`super::pull::escape_ref`].
pub fn unescape_ref(s: &str) -> Result<String> {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if it.peek() == Some(&'_') {
            it.next();
            out.push('_');
            continue;
        }
        let hex: String = it.by_ref().take_while(|&c| c != '_').collect();
        let n = u32::from_str_radix(&hex, 16)
            .map_err(|_| anyhow!("bad escape _{hex}_ in ref {s:?}"))?;
        out.push(char::from_u32(n).ok_or_else(|| anyhow!("bad code point {n:x} in ref {s:?}"))?);
    }
    Ok(out)
}

/// One stored image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredImage {
    pub imgref: String,
    pub ostree_ref: String,
    pub commit: String,
    pub manifest_digest: Option<String>,
    pub version: Option<String>,
}

/// A string the importer stored with a commit: in the merge commit's metadata, or in the
/// detached metadata of a pure ostree image.
pub fn meta(repo: &Repo, commit: &str, key: &str) -> Result<Option<String>> {
    let (c, _) = repo.load_commit(commit)?;
    if let Some(v) = glib::VariantDict::new(Some(&c.child_value(0)))
        .lookup::<String>(key)
        .ok()
        .flatten()
    {
        return Ok(Some(v));
    }
    Ok(repo
        .read_commit_detached_metadata(commit, gio::Cancellable::NONE)?
        .and_then(|d| {
            glib::VariantDict::new(Some(&d))
                .lookup::<String>(key)
                .ok()
                .flatten()
        }))
}

/// Every image in the repo at `path`.
pub fn list(path: &Path) -> Result<Vec<StoredImage>> {
    let repo = open_repo(path)?;
    let refs = repo
        .list_refs(
            Some(IMAGE_REF_PREFIX.trim_end_matches('/')),
            gio::Cancellable::NONE,
        )
        .context("listing image refs")?;
    let mut out = Vec::new();
    let mut names: Vec<_> = refs.into_iter().collect();
    names.sort();
    for (r, commit) in names {
        let full = if r.starts_with(IMAGE_REF_PREFIX) {
            r.to_string()
        } else {
            format!("{IMAGE_REF_PREFIX}{r}")
        };
        let esc = full.trim_start_matches(IMAGE_REF_PREFIX);
        let cfg: Option<serde_json::Value> =
            meta(&repo, &commit, META_CONFIG)?.and_then(|s| serde_json::from_str(&s).ok());
        out.push(StoredImage {
            imgref: unescape_ref(esc)?,
            ostree_ref: full,
            commit: commit.to_string(),
            manifest_digest: meta(&repo, &commit, META_MANIFEST_DIGEST)?,
            version: cfg.and_then(|c| {
                c["config"]["Labels"]["org.opencontainers.image.version"]
                    .as_str()
                    .map(str::to_string)
            }),
        });
    }
    Ok(out)
}

fn find(path: &Path, imgref: &str) -> Result<(Repo, StoredImage)> {
    let plain = crate::imgref::OstreeImageReference::parse(imgref)?;
    let all = list(path)?;
    let img = all
        .into_iter()
        .find(|i| {
            i.imgref == imgref
                || crate::imgref::OstreeImageReference::parse(&i.imgref)
                    .is_ok_and(|r| r.imgref == plain.imgref)
        })
        .ok_or_else(|| anyhow!("no image {imgref} in {} (see `image list`)", path.display()))?;
    Ok((open_repo(path)?, img))
}

/// The stored manifest (or, with `config`, the image config) of `imgref`.
pub fn metadata(path: &Path, imgref: &str, config: bool) -> Result<serde_json::Value> {
    let (repo, img) = find(path, imgref)?;
    let key = if config { META_CONFIG } else { META_MANIFEST };
    let s = meta(&repo, &img.commit, key)?
        .ok_or_else(|| anyhow!("{imgref}: no {key} stored with commit {}", img.commit))?;
    serde_json::from_str(&s).with_context(|| format!("{imgref}: stored {key} is not JSON"))
}

/// Remove the refs of these images (objects go with a later `ostree prune`).
pub fn remove(path: &Path, imgrefs: &[String]) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for r in imgrefs {
        let (repo, img) = find(path, r)?;
        repo.set_ref_immediate(None, &img.ostree_ref, None, gio::Cancellable::NONE)
            .with_context(|| format!("removing {}", img.ostree_ref))?;
        removed.push(img.ostree_ref);
    }
    if removed.is_empty() {
        bail!("no image named");
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::pull::escape_ref;

    #[test]
    fn unescape_inverts_escape() {
        for s in [
            "docker://quay.io/a/b:latest",
            "oci:/x_y/z:1",
            "ostree-unverified-image:containers-storage:localhost/os",
            "a__b",
        ] {
            assert_eq!(unescape_ref(&escape_ref(s)).unwrap(), s);
        }
        assert!(unescape_ref("_ZZ_").is_err());
    }
}
