//! A derived layer's tar, arbitrary bytes: parse it into a layer tree, store it as a layer
//! commit and lay it over a small base commit, as `image pull` does. Refusing the input is
//! fine; panicking, hanging or growing without bound is not, and neither is a merged tree the
//! path policy should have prevented.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostree::gio;
use ostree::MutableTree;
use ostree_bridge_fuzz::{FuzzRepo, EMPTY_DIRS};
use std::cell::RefCell;
use storage_bridge::layer_cache;
use storage_bridge::merge::TreeMerge;
use storage_bridge::tar::layer_to_tree::{layer_to_tree, WH};

thread_local! {
    static REPO: RefCell<FuzzRepo> = RefCell::new(FuzzRepo::new());
}

/// Every name in the tree is one plain component, and no whiteout marker survived the merge.
fn check_names(t: &MutableTree, path: &str) {
    let files = t.copy_files();
    let dirs = t.copy_subdirs();
    for n in files.keys().chain(dirs.keys()) {
        assert!(
            !n.is_empty() && n != "." && n != ".." && !n.contains('/'),
            "bad name {n:?} in /{path}"
        );
        assert!(!n.starts_with(WH), "whiteout {n:?} left in /{path}");
    }
    for (n, d) in dirs {
        check_names(&d, &format!("{path}/{n}"));
    }
}

fn run(r: &FuzzRepo, data: &[u8]) -> anyhow::Result<()> {
    let repo = &r.repo;
    let tree = layer_to_tree(repo, data, "layer 0 (fuzz)")?;
    for l in &tree.lower_links {
        for p in [&l.dest, &l.target] {
            let top = p.split('/').next().unwrap_or_default();
            assert!(
                top == "usr" || top == "var",
                "lower link {l:?} outside usr and var"
            );
        }
    }
    let (commit, meta) = layer_cache::write_tree(repo, &tree, "sha256:fuzz")?;
    let mut merge = TreeMerge::new(repo, Some(&r.base))?;
    merge.apply_layer(&commit, &meta, "layer 0 (fuzz)")?;
    merge.remove_builder_artifacts()?;
    let root = &merge.root;
    for (top, d) in root.copy_subdirs() {
        assert!(
            top == "usr" || top == "var" || EMPTY_DIRS.contains(&top.as_str()),
            "top-level directory {top:?} kept"
        );
        if EMPTY_DIRS.contains(&top.as_str()) {
            assert!(
                d.copy_files().is_empty() && d.copy_subdirs().is_empty(),
                "/{top} is not empty"
            );
        }
    }
    assert!(
        root.copy_files().is_empty(),
        "a file at the top: {:?}",
        root.copy_files()
    );
    check_names(root, "");
    repo.write_mtree(root, gio::Cancellable::NONE)?;
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    REPO.with_borrow_mut(|r| {
        let _ = run(r, data);
        r.tick();
    });
});
