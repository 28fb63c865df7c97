//! Tar streams of ostree content ("tar format v1", see `shared/REFERENCE.md` §2).
//!
//! - [`commit_to_tar`]: ostree commit ─▶ tar, one stream per image layer (sync, any `Write`).
//! - [`layer_to_tree`]: derived layer ─▶ a tree of its own (whiteout markers, hardlinks, path policy).
//! - [`tar_to_commit`]: ostree layers ─▶ verified objects in a repo (sync, any `Read`).

pub mod commit_to_tar;
pub mod guard;
pub mod layer_to_tree;
pub mod tar_to_commit;

use anyhow::{bail, Result};
use ostree::glib;
use ostree::prelude::*;

/// Copy a tar entry's `size` bytes of content into a libostree content writer; the rule broken
/// when it fails (the caller names the layer and the entry).
pub fn copy_content(
    entry: &mut impl std::io::Read,
    out: &ostree::gio::OutputStream,
    size: u64,
) -> std::result::Result<(), String> {
    let mut buf = vec![0u8; 1 << 17];
    let mut total = 0u64;
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| format!("reading content: {e}"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n], ostree::gio::Cancellable::NONE)
            .map_err(|e| format!("writing content: {e}"))?;
        total += n as u64;
    }
    if total != size {
        return Err(format!("content is {total} bytes, header says {size}"));
    }
    Ok(())
}

/// Largest value of one xattr carried in a PAX record.
pub const MAX_PAX_XATTR: usize = 1 << 16;

/// xattrs from an entry's PAX `SCHILY.xattr.*` records, as ostree's `a(ayay)` (names
/// NUL-terminated, sorted, first of duplicates kept); None when there are none.
pub fn pax_xattrs(
    entry: &mut ::tar::Entry<'_, impl std::io::Read>,
) -> Result<Option<glib::Variant>> {
    let Some(exts) = entry.pax_extensions()? else {
        return Ok(None);
    };
    let mut items: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for e in exts {
        let e = e?;
        if let Some(name) = e.key_bytes().strip_prefix(b"SCHILY.xattr.") {
            if name.is_empty() || name.contains(&0) {
                bail!("an xattr with an empty or NUL-containing name");
            }
            if e.value_bytes().len() > MAX_PAX_XATTR {
                bail!(
                    "xattr {} is larger than 64 KiB",
                    String::from_utf8_lossy(name)
                );
            }
            let mut n = name.to_vec();
            n.push(0);
            items.push((n, e.value_bytes().to_vec()));
        }
    }
    if items.is_empty() {
        return Ok(None);
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    items.dedup_by(|a, b| a.0 == b.0);
    Ok(Some(xattrs_variant(&items)))
}

/// `a(ayay)` from (NUL-terminated name, value) pairs.
pub fn xattrs_variant(items: &[(Vec<u8>, Vec<u8>)]) -> glib::Variant {
    let vs: Vec<glib::Variant> = items
        .iter()
        .map(|(k, v)| glib::Variant::tuple_from_iter([k.to_variant(), v.to_variant()]))
        .collect();
    glib::Variant::array_from_iter_with_type(
        glib::VariantTy::new("(ayay)").expect("valid type"),
        vs,
    )
}
