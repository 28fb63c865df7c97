//! tar ─▶ ostree objects, for the ostree layers of an image ("tar format v1": the commit layer
//! and chunk layers, ours and ostree-ext's).
//!
//! The tar is parsed here, in Rust; only objects go to libostree, each written with its
//! expected checksum so libostree verifies it before it exists in the repo. Checkout paths
//! (the hardlinks that make the layer a root filesystem) are not needed and are skipped.
//!
//! Rules, each an error naming the layer and the entry:
//! - object paths are `sysroot/ostree/repo/objects/XX/<62 hex>.<kind>`, names UTF-8;
//! - the commit comes first, alone, and only in the commit layer; its detached metadata right
//!   after it; dirtree and dirmeta only in the commit layer;
//! - metadata objects are regular files of at most 10 MiB, xattrs of at most 1 MiB;
//! - every content object follows its `.file-xattrs-link` (or carries PAX xattrs);
//! - content must match its name (libostree checks on write).

use crate::commit::Repo;
use anyhow::{anyhow, bail, Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::Read;

/// Largest metadata object (dirtree, dirmeta, commit, commitmeta): ostree's own limit.
pub const MAX_METADATA: u64 = 10 << 20;
/// Largest serialized xattrs of one object.
pub const MAX_XATTRS: u64 = 1 << 20;
const OBJECTS: &str = "sysroot/ostree/repo/objects/";

/// Which ostree layer this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerRole {
    /// Layer 0: commit, metadata, structure (and possibly content).
    Commit,
    /// A chunk: content objects only.
    Chunk,
}

/// What one layer brought.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LayerStats {
    pub commit: Option<String>,
    pub metadata_objects: u64,
    pub content_objects: u64,
    pub content_present: u64,
    pub content_bytes: u64,
    /// The layer was not read: the layer cache already held its objects.
    pub cached: bool,
    /// Every content object the layer carried (present before or not), for the layer cache.
    #[serde(skip)]
    pub objects: Vec<String>,
}

/// Parse `XX/REST.KIND` (after the objects prefix) into (checksum, kind).
fn parse_object_path(rel: &str) -> Option<(String, &str)> {
    let (dir, file) = rel.split_once('/')?;
    let (rest, kind) = file.split_once('.')?;
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if dir.len() != 2 || rest.len() != 62 || !hex(dir) || !hex(rest) || file.contains('/') {
        return None;
    }
    Some((format!("{dir}{rest}"), kind))
}

fn read_limited(r: &mut impl Read, size: u64, limit: u64, what: &str) -> Result<Vec<u8>> {
    if size > limit {
        bail!("{what} is {size} bytes, over the {limit} byte limit");
    }
    let mut buf = Vec::with_capacity(size as usize);
    r.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 != size {
        bail!("{what}: read {} bytes, header says {size}", buf.len());
    }
    Ok(buf)
}

fn xattrs_variant(data: &[u8]) -> glib::Variant {
    let v = glib::Variant::from_bytes_with_type(
        &glib::Bytes::from(data),
        glib::VariantTy::new("a(ayay)").expect("type"),
    );
    v.normal_form()
}

/// Imports the ostree layers of one image, in order, into an open transaction.
pub struct ObjectImporter<'r> {
    repo: &'r Repo,
    xattrs: HashMap<String, glib::Variant>,
    commit: Option<String>,
    /// The commit was complete in the repo before: its objects are not rewritten.
    commit_was_complete: bool,
    /// This importer marked the commit partial (and must clear the mark).
    marked_partial: bool,
}

impl<'r> ObjectImporter<'r> {
    pub fn new(repo: &'r Repo) -> Self {
        ObjectImporter {
            repo,
            xattrs: HashMap::new(),
            commit: None,
            commit_was_complete: false,
            marked_partial: false,
        }
    }

    /// The commit found in the commit layer.
    pub fn commit(&self) -> Option<&str> {
        self.commit.as_deref()
    }

    /// Import one layer's tar stream. `layer` names it in errors.
    pub fn import_layer(
        &mut self,
        tar: impl Read,
        role: LayerRole,
        layer: &str,
    ) -> Result<LayerStats> {
        let mut stats = LayerStats::default();
        let mut ar = tar::Archive::new(super::guard::TarGuard::new(tar));
        let mut next_xattrs: Option<(String, String)> = None;
        let mut last_was_commit = false;
        for (i, entry) in ar
            .entries()
            .with_context(|| format!("{layer}: reading tar"))?
            .enumerate()
        {
            let mut entry = entry.with_context(|| format!("{layer}: tar entry {i}"))?;
            let raw = entry.path_bytes().into_owned();
            let path = std::str::from_utf8(&raw).map_err(|_| {
                anyhow!(
                    "{layer}: entry {i} {:?}: path is not UTF-8",
                    String::from_utf8_lossy(&raw)
                )
            })?;
            let path = path.trim_start_matches("./");
            let Some(rel) = path.strip_prefix(OBJECTS) else {
                continue;
            };
            let kind_t = entry.header().entry_type();
            if kind_t.is_dir() {
                continue;
            }
            let ctx = |rule: &str| format!("{layer}: entry {path:?}: {rule}");
            let (csum, kind) = parse_object_path(rel).ok_or_else(|| {
                anyhow!(ctx(
                    "not an ostree object name (objects/XX/<62 hex>.<kind>)"
                ))
            })?;
            let size = entry
                .header()
                .size()
                .with_context(|| ctx("bad size field"))?;
            let was_commit = std::mem::replace(&mut last_was_commit, false);
            match kind {
                "commit" | "commitmeta" | "dirtree" | "dirmeta" => {
                    if role != LayerRole::Commit {
                        bail!(ctx("metadata objects belong in the commit layer only"));
                    }
                    if !kind_t.is_file() {
                        bail!(ctx("metadata objects must be regular files"));
                    }
                    let data =
                        read_limited(&mut entry, size, MAX_METADATA, &ctx("metadata object"))?;
                    match kind {
                        "commit" => {
                            if self.commit.is_some() {
                                bail!(ctx("a second commit object"));
                            }
                            if stats.metadata_objects > 0 || stats.content_objects > 0 {
                                bail!(ctx("the commit must be the first object"));
                            }
                            let actual = hex::encode(Sha256::digest(&data));
                            if actual != csum {
                                bail!(ctx(&format!(
                                    "content does not match its name (it hashes to {actual})"
                                )));
                            }
                            let v = glib::Variant::from_bytes_with_type(
                                &glib::Bytes::from(&data[..]),
                                glib::VariantTy::new("(a{sv}aya(say)sstayay)").expect("type"),
                            );
                            if !v.is_normal_form() {
                                bail!(ctx("commit object is not in normal form"));
                            }
                            // A commit already complete in the repo stays as it is: no
                            // partial mark, no rewritten detached metadata (signatures).
                            self.commit_was_complete = matches!(
                                self.repo.load_commit(&csum),
                                Ok((_, st)) if !st.contains(ostree::RepoCommitState::PARTIAL)
                            );
                            if !self.commit_was_complete {
                                self.repo
                                    .mark_commit_partial(&csum, true)
                                    .with_context(|| ctx("marking partial"))?;
                                self.marked_partial = true;
                                self.write_metadata(ostree::ObjectType::Commit, &csum, &v)
                                    .with_context(|| ctx("writing commit"))?;
                            }
                            self.commit = Some(csum);
                            last_was_commit = true;
                        }
                        "commitmeta" => {
                            if !was_commit || self.commit.as_deref() != Some(csum.as_str()) {
                                bail!(ctx("detached metadata must directly follow its commit"));
                            }
                            let v = glib::Variant::from_bytes_with_type(
                                &glib::Bytes::from(&data[..]),
                                glib::VariantTy::new("a{sv}").expect("type"),
                            );
                            if !self.commit_was_complete {
                                self.repo
                                    .write_commit_detached_metadata(
                                        &csum,
                                        Some(&v.normal_form()),
                                        gio::Cancellable::NONE,
                                    )
                                    .with_context(|| ctx("writing detached metadata"))?;
                            }
                        }
                        k => {
                            if self.commit.is_none() {
                                bail!(ctx("metadata object before the commit"));
                            }
                            let (t, ty) = if k == "dirtree" {
                                (ostree::ObjectType::DirTree, "(a(say)a(sayay))")
                            } else {
                                (ostree::ObjectType::DirMeta, "(uuua(ayay))")
                            };
                            let v = glib::Variant::from_bytes_with_type(
                                &glib::Bytes::from(&data[..]),
                                glib::VariantTy::new(ty).expect("type"),
                            );
                            if !v.is_normal_form() {
                                bail!(ctx("metadata object is not in normal form"));
                            }
                            self.write_metadata(t, &csum, &v)
                                .with_context(|| ctx("writing metadata object"))?;
                        }
                    }
                    stats.metadata_objects += 1;
                }
                "file-xattrs" => {
                    if !kind_t.is_file() {
                        bail!(ctx("xattrs objects must be regular files"));
                    }
                    let data = read_limited(&mut entry, size, MAX_XATTRS, &ctx("xattrs"))?;
                    let actual = hex::encode(Sha256::digest(&data));
                    if actual != csum {
                        bail!(ctx(&format!(
                            "xattrs do not match their name (they hash to {actual})"
                        )));
                    }
                    self.xattrs.insert(csum, xattrs_variant(&data));
                }
                "file-xattrs-link" => {
                    if let Some((prev, _)) = &next_xattrs {
                        bail!(ctx(&format!("xattrs for {prev} were never used")));
                    }
                    let xcsum = if kind_t == tar::EntryType::Link {
                        let target = entry
                            .link_name_bytes()
                            .ok_or_else(|| anyhow!(ctx("hardlink without target")))?;
                        let target = std::str::from_utf8(&target)
                            .map_err(|_| anyhow!(ctx("link target is not UTF-8")))?;
                        let rel = target
                            .trim_start_matches("./")
                            .strip_prefix(OBJECTS)
                            .ok_or_else(|| {
                                anyhow!(ctx("xattrs link points outside the object store"))
                            })?;
                        match parse_object_path(rel) {
                            Some((x, "file-xattrs")) => x,
                            _ => bail!(ctx("xattrs link does not point to a .file-xattrs object")),
                        }
                    } else if kind_t.is_file() {
                        let data = read_limited(&mut entry, size, MAX_XATTRS, &ctx("xattrs"))?;
                        let x = hex::encode(Sha256::digest(&data));
                        self.xattrs.insert(x.clone(), xattrs_variant(&data));
                        x
                    } else {
                        bail!(ctx("xattrs link must be a hardlink or a regular file"));
                    };
                    if !self.xattrs.contains_key(&xcsum) {
                        bail!(ctx(&format!(
                            "xattrs object {xcsum} was not seen before its link"
                        )));
                    }
                    next_xattrs = Some((csum, xcsum));
                }
                "file" => {
                    let xattrs = match next_xattrs.take() {
                        Some((c, x)) if c == csum => self.xattrs[&x].clone(),
                        Some((c, _)) => {
                            bail!(ctx(&format!("follows the xattrs of another object ({c})")))
                        }
                        None => match super::pax_xattrs(&mut entry)
                            .with_context(|| ctx("PAX headers"))?
                        {
                            Some(v) => v,
                            None => bail!(ctx("content object without xattrs record")),
                        },
                    };
                    stats.content_objects += 1;
                    stats.objects.push(csum.clone());
                    if self.repo.has_object(
                        ostree::ObjectType::File,
                        &csum,
                        gio::Cancellable::NONE,
                    )? {
                        stats.content_present += 1;
                        continue;
                    }
                    let h = entry.header();
                    let uid: u32 = h
                        .uid()
                        .map_err(|e| anyhow!(ctx(&format!("bad header field: {e}"))))?
                        .try_into()
                        .map_err(|_| anyhow!(ctx("uid beyond 32 bits")))?;
                    let gid: u32 = h
                        .gid()
                        .map_err(|e| anyhow!(ctx(&format!("bad header field: {e}"))))?
                        .try_into()
                        .map_err(|_| anyhow!(ctx("gid beyond 32 bits")))?;
                    // chown(2) reads (uid_t)-1 as "leave unchanged": such an object would be
                    // stored owned by the importer while its checksum says otherwise.
                    if uid == u32::MAX || gid == u32::MAX {
                        bail!(ctx("uid or gid 4294967295 cannot be stored"));
                    }
                    let mode = h
                        .mode()
                        .map_err(|e| anyhow!(ctx(&format!("bad header field: {e}"))))?
                        & 0o7777;
                    if kind_t.is_file() {
                        let w = self
                            .repo
                            .write_regfile(
                                Some(&csum),
                                uid,
                                gid,
                                libc::S_IFREG | mode,
                                size,
                                Some(&xattrs),
                            )
                            .with_context(|| ctx("starting content object"))?;
                        let out = w.clone().upcast::<gio::OutputStream>();
                        super::copy_content(&mut entry, &out, size)
                            .map_err(|r| anyhow!(ctx(&r)))?;
                        let got = w
                            .finish(gio::Cancellable::NONE)
                            .with_context(|| ctx("content does not match its name"))?;
                        if got.as_str() != csum {
                            bail!(ctx(&format!(
                                "content does not match its name (it is {got})"
                            )));
                        }
                        stats.content_bytes += size;
                    } else if kind_t == tar::EntryType::Symlink {
                        let target = entry
                            .link_name_bytes()
                            .ok_or_else(|| anyhow!(ctx("symlink without target")))?;
                        let target = std::str::from_utf8(&target)
                            .map_err(|_| anyhow!(ctx("symlink target is not UTF-8")))?
                            .to_string();
                        if target.contains('\0') {
                            bail!(ctx("a NUL byte in the symlink target"));
                        }
                        let got = self
                            .repo
                            .write_symlink(
                                Some(&csum),
                                uid,
                                gid,
                                Some(&xattrs),
                                &target,
                                gio::Cancellable::NONE,
                            )
                            .with_context(|| ctx("symlink does not match its name"))?;
                        if got.as_str() != csum {
                            bail!(ctx(&format!(
                                "symlink does not match its name (it is {got})"
                            )));
                        }
                    } else {
                        bail!(ctx("content objects must be regular files or symlinks"));
                    }
                }
                other => bail!(ctx(&format!("unknown object kind {other:?}"))),
            }
        }
        if let Some((c, _)) = next_xattrs {
            bail!("{layer}: xattrs for {c} at the end of the layer, with no object after them");
        }
        if role == LayerRole::Commit && self.commit.is_none() {
            bail!("{layer}: the commit layer has no commit object");
        }
        stats.commit = self.commit.clone();
        Ok(stats)
    }

    fn write_metadata(&self, t: ostree::ObjectType, csum: &str, v: &glib::Variant) -> Result<()> {
        let got = self
            .repo
            .write_metadata(t, Some(csum), v, gio::Cancellable::NONE)?;
        if got.to_hex() != csum {
            bail!("object is {} , not {csum}", got.to_hex());
        }
        Ok(())
    }

    /// After every layer: the commit and everything it references are present. Returns the
    /// commit checksum and whether this importer marked it partial: that mark must stay until
    /// the transaction is committed (libostree moves staged objects into `objects/` one by
    /// one, the commit possibly first), and be cleared then, or after an abort.
    pub fn finish(self) -> Result<(String, bool)> {
        let csum = self
            .commit
            .ok_or_else(|| anyhow!("no commit object in the image's ostree layers"))?;
        // Each distinct dirtree once: a hostile commit can share subtrees exponentially.
        let (c, _) = self.repo.load_commit(&csum)?;
        let mut todo = vec![(
            hex::encode(c.child_value(6).data_as_bytes()),
            hex::encode(c.child_value(7).data_as_bytes()),
        )];
        let (mut trees, mut metas, mut files) = (HashSet::new(), HashSet::new(), HashSet::new());
        const MAX_OBJECTS: usize = 50_000_000;
        let none = gio::Cancellable::NONE;
        while let Some((t, m)) = todo.pop() {
            if metas.insert(m.clone())
                && !self
                    .repo
                    .has_object(ostree::ObjectType::DirMeta, &m, none)?
            {
                bail!("the image lacks dirmeta object {m}");
            }
            if !trees.insert(t.clone()) {
                continue;
            }
            let v = self
                .repo
                .load_variant(ostree::ObjectType::DirTree, &t)
                .with_context(|| format!("the image lacks dirtree object {t}"))?;
            let fv = v.child_value(0);
            for i in 0..fv.n_children() {
                let f = hex::encode(fv.child_value(i).child_value(1).data_as_bytes());
                if files.insert(f.clone())
                    && !self.repo.has_object(ostree::ObjectType::File, &f, none)?
                {
                    bail!("the image lacks content object {f}");
                }
            }
            let dv = v.child_value(1);
            for i in 0..dv.n_children() {
                let e = dv.child_value(i);
                todo.push((
                    hex::encode(e.child_value(1).data_as_bytes()),
                    hex::encode(e.child_value(2).data_as_bytes()),
                ));
            }
            if trees.len() + files.len() > MAX_OBJECTS {
                bail!("the commit references more than {MAX_OBJECTS} objects");
            }
        }
        Ok((csum, self.marked_partial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The NUL the `tar_to_tree` fuzz target found in derived layers' symlinks, in a symlink
    /// object: a GNU long link or PAX `linkpath` can hold one, and the ostree bindings panicked
    /// passing it to C.
    #[test]
    fn refuses_nul_in_symlink_objects() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::new(&gio::File::for_path(d.path()));
        repo.create(ostree::RepoMode::BareUser, gio::Cancellable::NONE)
            .unwrap();
        repo.prepare_transaction(gio::Cancellable::NONE).unwrap();
        let obj = format!("{OBJECTS}ab/{}", "c".repeat(62));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mode(0o644);
        b.append_data(&mut h, format!("{obj}.file-xattrs-link"), std::io::empty())
            .unwrap();
        b.append_pax_extensions([("linkpath", &b"\0x"[..])])
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, format!("{obj}.file"), "x").unwrap();
        let tar = b.into_inner().unwrap();
        let e = ObjectImporter::new(&repo)
            .import_layer(tar.as_slice(), LayerRole::Chunk, "layer 1")
            .unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e:#}");
        repo.abort_transaction(gio::Cancellable::NONE).unwrap();
    }

    #[test]
    fn object_paths_parse_strictly() {
        let c = "ab".to_string() + &"c".repeat(62);
        assert_eq!(
            parse_object_path(&format!("ab/{}.file", &c[2..])),
            Some((c.clone(), "file"))
        );
        assert_eq!(
            parse_object_path(&format!("ab/{}.file-xattrs-link", &c[2..])).map(|x| x.1),
            Some("file-xattrs-link")
        );
        assert!(parse_object_path("ab/short.file").is_none());
        assert!(parse_object_path(&format!("AB/{}.file", &c[2..])).is_none());
        assert!(parse_object_path(&format!("ab/../{}.file", &c[2..])).is_none());
        assert!(parse_object_path(&format!("ab/{}", &c[2..])).is_none());
    }
}
