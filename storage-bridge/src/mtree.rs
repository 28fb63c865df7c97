//! Walking a libostree [`MutableTree`] by path: the few operations the layer builder and the
//! layer merge share.

use anyhow::{anyhow, Result};
use ostree::gio;
use ostree::glib;
use ostree::MutableTree;

/// The entry `name` of `t`: (file checksum, subdirectory); both None when there is no such
/// name. Other failures (e.g. a lazily loaded dirtree that cannot be read) are errors.
pub fn entry(t: &MutableTree, name: &str) -> Result<(Option<String>, Option<MutableTree>)> {
    match t.lookup(name) {
        Ok((f, d)) => Ok((f.map(|s| s.to_string()), d)),
        Err(e) if e.matches(gio::IOErrorEnum::NotFound) => Ok((None, None)),
        Err(e) => Err(anyhow!("looking up {name:?}: {e}")),
    }
}

/// `path` split into (parent, name); the parent of a top-level name is "".
pub fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// The directory at `path` under `root` when it exists.
pub fn find_dir(root: &MutableTree, path: &str) -> Result<Option<MutableTree>> {
    let mut t = root.clone();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        match entry(&t, c)?.1 {
            Some(s) => t = s,
            None => return Ok(None),
        }
    }
    Ok(Some(t))
}

/// The content checksum of the file (or symlink) at `path` under `root`.
pub fn find_file(root: &MutableTree, path: &str) -> Result<Option<String>> {
    let (dir, name) = split(path);
    match find_dir(root, dir)? {
        Some(d) => Ok(entry(&d, name)?.0),
        None => Ok(None),
    }
}

/// Remove the entry at `path` (file or whole directory) when it exists.
pub fn remove(root: &MutableTree, path: &str) -> Result<()> {
    let (dir, name) = split(path);
    if let Some(d) = find_dir(root, dir)? {
        d.remove(name, true)?;
    }
    Ok(())
}

/// `name` in `t` as a directory: an existing one, or a new one with `dirmeta` (a file in the
/// way is replaced). Returns the directory and whether it was created.
pub fn ensure_subdir(t: &MutableTree, name: &str, dirmeta: &str) -> Result<(MutableTree, bool)> {
    let (file, sub) = entry(t, name)?;
    if let Some(s) = sub {
        return Ok((s, false));
    }
    if file.is_some() {
        t.remove(name, false)?;
    }
    let d = t.ensure_dir(name)?;
    d.set_metadata_checksum(dirmeta);
    Ok((d, true))
}

/// Put a file (content checksum) at `name` in `t`, replacing a directory in the way.
pub fn put_file(t: &MutableTree, name: &str, csum: &str) -> Result<()> {
    if entry(t, name)?.1.is_some() {
        t.remove(name, false)?;
    }
    t.replace_file(name, csum)?;
    Ok(())
}

/// Directory metadata for the given owner and mode.
pub fn dirmeta_variant(uid: u32, gid: u32, mode: u32, xattrs: &glib::Variant) -> glib::Variant {
    let fi = gio::FileInfo::new();
    fi.set_attribute_uint32("unix::uid", uid);
    fi.set_attribute_uint32("unix::gid", gid);
    fi.set_attribute_uint32("unix::mode", libc::S_IFDIR | (mode & 0o7777));
    ostree::create_directory_metadata(&fi, Some(xattrs))
}

/// No xattrs, as `a(ayay)`.
pub fn empty_xattrs() -> glib::Variant {
    glib::Variant::array_from_iter_with_type(
        glib::VariantTy::new("(ayay)").expect("type"),
        Vec::<glib::Variant>::new(),
    )
}

/// Write (or find) the dirmeta of a root:root 0755 directory without xattrs.
pub fn default_dirmeta(repo: &ostree::Repo) -> Result<String> {
    Ok(repo
        .write_metadata(
            ostree::ObjectType::DirMeta,
            None,
            &dirmeta_variant(0, 0, 0o755, &empty_xattrs()),
            gio::Cancellable::NONE,
        )?
        .to_hex())
}
