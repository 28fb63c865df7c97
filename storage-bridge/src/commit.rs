//! libostree only: open a repo, read a commit, its metadata and its whole directory structure
//! into plain data ([`CommitTree`]), and query content objects.
//!
//! Everything that leaves this module is plain Rust data (`Send`), so later stages can run on
//! worker threads, each with its own [`Repo`] handle ([`open_repo`]).

use anyhow::{anyhow, bail, Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub use ostree::Repo;

/// Open an existing repository.
pub fn open_repo(path: &Path) -> Result<Repo> {
    if !path.join("objects").is_dir() || !path.join("config").is_file() {
        bail!(
            "{}: not an ostree repository (no objects/ or config)",
            path.display()
        );
    }
    let repo = Repo::new(&gio::File::for_path(path));
    repo.open(gio::Cancellable::NONE)
        .with_context(|| format!("opening ostree repository {}", path.display()))?;
    Ok(repo)
}

/// Resolve a ref or checksum to a commit checksum, with an error that says which.
pub fn resolve_commit(repo: &Repo, rev: &str) -> Result<String> {
    let csum = repo
        .resolve_rev(rev, true)
        .with_context(|| format!("resolving {rev:?}"))?
        .ok_or_else(|| anyhow!("no ref or commit {rev:?} in the repository"))?;
    // A ref that names a non-commit object is caught by load_commit.
    repo.load_commit(&csum)
        .with_context(|| format!("{rev:?} ({csum}) is not a commit in this repository"))?;
    Ok(csum.to_string())
}

/// One directory of the commit, in the order the tar stream visits it (depth first).
#[derive(Debug, Clone)]
pub struct DirNode {
    /// Path in the commit, no leading `/`; "" for the root.
    pub path: String,
    pub dirtree: String,
    pub dirmeta: String,
    /// (name, content checksum), in dirtree order (sorted by name).
    pub files: Vec<(String, String)>,
    /// (name, index into [`CommitTree::dirs`]), in dirtree order.
    pub subdirs: Vec<(String, usize)>,
}

/// A directory's metadata, parsed.
#[derive(Debug, Clone)]
pub struct DirMeta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The commit object's metadata that the image format uses.
#[derive(Debug, Clone, Default)]
pub struct CommitMeta {
    pub subject: String,
    pub timestamp: u64,
    pub version: Option<String>,
    pub bootable: Option<bool>,
    pub linux: Option<String>,
    pub cmd: Option<Vec<String>>,
    /// Every string-valued metadata key (for `--copymeta`).
    pub strings: BTreeMap<String, String>,
}

/// A commit and its whole structure, read once.
#[derive(Debug)]
pub struct CommitTree {
    pub checksum: String,
    pub commit_bytes: Vec<u8>,
    pub commitmeta_bytes: Option<Vec<u8>>,
    pub meta: CommitMeta,
    /// `dirs[0]` is the root.
    pub dirs: Vec<DirNode>,
    pub dirtrees: HashMap<String, Vec<u8>>,
    pub dirmetas: HashMap<String, (Vec<u8>, DirMeta)>,
}

impl CommitTree {
    /// Read `checksum` and every dirtree and dirmeta it references.
    pub fn load(repo: &Repo, checksum: &str) -> Result<Self> {
        let (commit_v, _state) = repo
            .load_commit(checksum)
            .with_context(|| format!("loading commit {checksum}"))?;
        let commit_bytes = commit_v.data_as_bytes().to_vec();
        let commitmeta_bytes = repo
            .read_commit_detached_metadata(checksum, gio::Cancellable::NONE)
            .with_context(|| format!("reading detached metadata of {checksum}"))?
            .map(|v| v.data_as_bytes().to_vec());
        let meta = parse_commit_meta(&commit_v)?;
        let root_tree = hex::encode(commit_v.child_value(6).data_as_bytes());
        let root_meta = hex::encode(commit_v.child_value(7).data_as_bytes());
        let mut t = CommitTree {
            checksum: checksum.to_string(),
            commit_bytes,
            commitmeta_bytes,
            meta,
            dirs: Vec::new(),
            dirtrees: HashMap::new(),
            dirmetas: HashMap::new(),
        };
        t.walk(repo, String::new(), root_tree, root_meta)?;
        Ok(t)
    }

    fn walk(&mut self, repo: &Repo, path: String, tree: String, meta: String) -> Result<usize> {
        if !self.dirmetas.contains_key(&meta) {
            let v = repo
                .load_variant(ostree::ObjectType::DirMeta, &meta)
                .with_context(|| format!("loading dirmeta {meta} of /{path}"))?;
            let p = ostree::DirMetaParsed::from_variant(&v)
                .map_err(|e| anyhow!("dirmeta {meta} of /{path}: {e}"))?;
            let dm = DirMeta {
                uid: p.uid,
                gid: p.gid,
                mode: p.mode,
                xattrs: p
                    .xattrs
                    .into_iter()
                    .map(|(mut k, v)| {
                        if k.last() == Some(&0) {
                            k.pop();
                        }
                        (k, v)
                    })
                    .collect(),
            };
            self.dirmetas
                .insert(meta.clone(), (v.data_as_bytes().to_vec(), dm));
        }
        let v = repo
            .load_variant(ostree::ObjectType::DirTree, &tree)
            .with_context(|| format!("loading dirtree {tree} of /{path}"))?;
        let files_v = v.child_value(0);
        let mut files = Vec::with_capacity(files_v.n_children());
        for i in 0..files_v.n_children() {
            let e = files_v.child_value(i);
            let name = variant_str(&e.child_value(0))?;
            let csum = hex::encode(e.child_value(1).data_as_bytes());
            files.push((name, csum));
        }
        let dirs_v = v.child_value(1);
        let mut subdirs_raw = Vec::with_capacity(dirs_v.n_children());
        for i in 0..dirs_v.n_children() {
            let e = dirs_v.child_value(i);
            let name = variant_str(&e.child_value(0))?;
            let t = hex::encode(e.child_value(1).data_as_bytes());
            let m = hex::encode(e.child_value(2).data_as_bytes());
            subdirs_raw.push((name, t, m));
        }
        self.dirtrees
            .entry(tree.clone())
            .or_insert_with(|| v.data_as_bytes().to_vec());
        let idx = self.dirs.len();
        self.dirs.push(DirNode {
            path: path.clone(),
            dirtree: tree,
            dirmeta: meta,
            files,
            subdirs: Vec::new(),
        });
        let mut subdirs = Vec::with_capacity(subdirs_raw.len());
        for (name, t, m) in subdirs_raw {
            let sub = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            let child = self.walk(repo, sub, t, m)?;
            subdirs.push((name, child));
        }
        self.dirs[idx].subdirs = subdirs;
        Ok(idx)
    }

    /// Every content object with the paths that name it, sorted by checksum; paths in walk order.
    pub fn content_paths(&self) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for d in &self.dirs {
            for (name, csum) in &d.files {
                m.entry(csum.clone()).or_default().push(join(&d.path, name));
            }
        }
        m
    }

    /// The root dirmeta.
    pub fn root_meta(&self) -> &DirMeta {
        &self.dirmetas[&self.dirs[0].dirmeta].1
    }
}

/// `dir/name`, or `name` at the root.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn variant_str(v: &glib::Variant) -> Result<String> {
    v.str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("dirtree entry name is not a string"))
}

fn parse_commit_meta(commit: &glib::Variant) -> Result<CommitMeta> {
    let dict = glib::VariantDict::new(Some(&commit.child_value(0)));
    let md = commit.child_value(0);
    let mut strings = BTreeMap::new();
    for i in 0..md.n_children() {
        let e = md.child_value(i);
        let (Some(k), v) = (e.child_value(0).str().map(str::to_string), e.child_value(1)) else {
            continue;
        };
        let inner = v.as_variant().unwrap_or(v);
        if let Some(s) = inner.str() {
            strings.insert(k, s.to_string());
        }
    }
    let subject = commit.child_value(3).str().unwrap_or_default().to_string();
    Ok(CommitMeta {
        subject,
        timestamp: ostree::commit_get_timestamp(commit),
        version: dict
            .lookup::<String>(crate::labels::COMMIT_META_VERSION)
            .ok()
            .flatten(),
        bootable: dict
            .lookup::<bool>(crate::labels::COMMIT_META_BOOTABLE)
            .ok()
            .flatten(),
        linux: dict
            .lookup::<String>(crate::labels::COMMIT_META_LINUX)
            .ok()
            .flatten(),
        cmd: dict
            .lookup::<Vec<String>>(crate::labels::COMMIT_META_CMD)
            .ok()
            .flatten(),
        strings,
    })
}

/// A content object's metadata.
#[derive(Debug, Clone)]
pub struct FileMeta {
    pub uid: u32,
    pub gid: u32,
    /// Mode including the file type bits.
    pub mode: u32,
    pub size: u64,
    /// Symlink target, for symlinks.
    pub symlink: Option<String>,
    /// The serialized `a(ayay)` xattrs exactly as ostree stores them.
    pub xattrs_raw: Vec<u8>,
    /// Parsed xattrs: names without the trailing NUL.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl FileMeta {
    pub fn is_symlink(&self) -> bool {
        self.symlink.is_some()
    }

    /// The value of one xattr.
    pub fn xattr(&self, name: &str) -> Option<&[u8]> {
        self.xattrs
            .iter()
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }
}

/// Parse an `a(ayay)` xattrs variant; names lose their trailing NUL.
pub fn parse_xattrs(v: &glib::Variant) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(v.n_children());
    for i in 0..v.n_children() {
        let e = v.child_value(i);
        let mut k = e.child_value(0).data_as_bytes().to_vec();
        if k.last() == Some(&0) {
            k.pop();
        }
        out.push((k, e.child_value(1).data_as_bytes().to_vec()));
    }
    out
}

/// Query one content object's metadata without opening its content.
pub fn query_file(repo: &Repo, checksum: &str) -> Result<FileMeta> {
    let (info, xattrs) = repo
        .query_file(checksum, gio::Cancellable::NONE)
        .with_context(|| format!("reading content object {checksum}"))?;
    file_meta(&info, &xattrs, checksum)
}

fn file_meta(info: &gio::FileInfo, xattrs: &glib::Variant, checksum: &str) -> Result<FileMeta> {
    let symlink = match info.file_type() {
        gio::FileType::Regular => None,
        gio::FileType::SymbolicLink => {
            let t = info
                .symlink_target()
                .ok_or_else(|| anyhow!("symlink object {checksum} has no target"))?;
            Some(
                t.to_str()
                    .ok_or_else(|| anyhow!("symlink object {checksum}: target is not UTF-8"))?
                    .to_string(),
            )
        }
        other => bail!("content object {checksum} has unsupported type {other:?}"),
    };
    Ok(FileMeta {
        uid: info.attribute_uint32("unix::uid"),
        gid: info.attribute_uint32("unix::gid"),
        mode: info.attribute_uint32("unix::mode"),
        size: if symlink.is_some() {
            0
        } else {
            info.size() as u64
        },
        symlink,
        xattrs_raw: xattrs.data_as_bytes().to_vec(),
        xattrs: parse_xattrs(xattrs),
    })
}

/// Open one content object: its metadata and, for regular files, a reader of its content.
pub fn open_file(repo: &Repo, checksum: &str) -> Result<(FileMeta, Option<impl std::io::Read>)> {
    let (stream, info, xattrs) = repo
        .load_file(checksum, gio::Cancellable::NONE)
        .with_context(|| format!("opening content object {checksum}"))?;
    let meta = file_meta(&info, &xattrs, checksum)?;
    Ok((meta, stream.map(|s| s.into_read())))
}

/// libostree prints progress (e.g. "Freed objects: …" after a sysroot cleanup) on stdout with
/// `g_print`; a CLI whose stdout carries `--json` routes those messages to stderr with this.
pub fn route_libostree_messages_to_stderr() {
    #[allow(clippy::print_stderr)]
    glib::set_print_handler(|s| eprint!("{s}"));
}

/// Abort `repo`'s transaction and throw away what it staged.
///
/// libostree keeps an aborted transaction's staging directory (`tmp/staging-<boot id>-…`) and
/// the next transaction of the same boot reuses it, committing whatever it holds: objects of an
/// image that was just refused would land in `objects/` with the next successful import (a
/// refused commit object would even look complete there). So every staging directory nobody
/// holds (its `<name>-lock` beside it, which libostree takes with a non-blocking flock, can be
/// taken) is removed. A transaction running in another process keeps its lock and its directory.
pub fn abort_and_discard(repo: &Repo) {
    repo.abort_transaction(gio::Cancellable::NONE).ok();
    let Some(tmp) = repo.path().path().map(|p| p.join("tmp")) else {
        return;
    };
    let Ok(list) = std::fs::read_dir(&tmp) else {
        return;
    };
    for e in list.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("staging-") || name.ends_with("-lock") {
            continue;
        }
        let lock_path = tmp.join(format!("{name}-lock"));
        let Ok(lock) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
        else {
            continue;
        };
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            std::fs::remove_dir_all(e.path()).ok();
            std::fs::remove_file(&lock_path).ok();
        }
    }
}

/// The commits a transaction writes, marked partial until it is committed.
///
/// libostree moves staged objects into `objects/` one by one when the transaction commits, a
/// commit object possibly before the trees it names: a kill in between must leave that commit
/// marked partial (fsck and our own lookups then skip it) rather than looking complete.
#[derive(Debug, Default)]
pub struct Partials(std::sync::Mutex<Vec<(String, bool)>>);

impl Partials {
    /// Mark `commit` (just written in the transaction) partial until the transaction commits.
    /// A commit already marked (a killed run's) is only noted: its mark is not ours to drop.
    pub fn mark(&self, repo: &Repo, commit: &str) -> Result<()> {
        let marked = matches!(repo.load_commit(commit),
            Ok((_, st)) if st.contains(ostree::RepoCommitState::PARTIAL));
        if marked {
            self.note(commit);
            return Ok(());
        }
        repo.mark_commit_partial(commit, true)
            .with_context(|| format!("marking {commit} partial"))?;
        if let Ok(mut v) = self.0.lock() {
            v.push((commit.to_string(), true));
        }
        Ok(())
    }

    /// `commit` was marked partial by someone else (the ostree-layer importer): clear it once
    /// committed, drop it after an abort only when stale.
    pub fn note(&self, commit: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push((commit.to_string(), false));
        }
    }

    fn take(&self) -> Vec<(String, bool)> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// Run `f` in a transaction of `repo`: commit it when `f` succeeds; when anything fails, abort
/// it and discard what it staged ([`abort_and_discard`]).
///
/// Commits `f` records in [`Partials`] keep their partial mark until the transaction is
/// committed, and lose it then. After a failure before the commit nothing reached `objects/`,
/// so the marks this transaction set go; after a failed commit they stay where the commit
/// object is in the repo; marks set by others go only when stale ([`drop_stale_partial`]).
pub fn in_transaction<T>(repo: &Repo, f: impl FnOnce(&Partials) -> Result<T>) -> Result<T> {
    repo.prepare_transaction(gio::Cancellable::NONE)
        .context("starting a repository transaction")?;
    let partials = Partials::default();
    let mut committing = false;
    let r = f(&partials).and_then(|t| {
        committing = true;
        repo.commit_transaction(gio::Cancellable::NONE)
            .context("committing the transaction")?;
        Ok(t)
    });
    match r {
        Ok(t) => {
            for (c, _) in partials.take() {
                repo.mark_commit_partial(&c, false)
                    .with_context(|| format!("clearing the partial mark of {c}"))?;
            }
            Ok(t)
        }
        Err(e) => {
            abort_and_discard(repo);
            for (c, ours) in partials.take() {
                if ours && !committing {
                    repo.mark_commit_partial(&c, false).ok();
                } else {
                    drop_stale_partial(repo, &c);
                }
            }
            Err(e)
        }
    }
}

/// After an aborted import: drop the partial mark of `commit` when the commit object is not in
/// the repo (the mark then stands for nothing). A commit object that is there keeps its mark,
/// whoever set it: a killed import may have left it without all its objects.
pub fn drop_stale_partial(repo: &Repo, commit: &str) {
    if matches!(
        repo.has_object(ostree::ObjectType::Commit, commit, gio::Cancellable::NONE),
        Ok(false)
    ) {
        repo.mark_commit_partial(commit, false).ok();
    }
}
