//! An ostree layer's tar ("tar format v1"), arbitrary bytes: import it as the commit layer,
//! then as a chunk layer. Refusing the input is fine; panicking, hanging or growing without
//! bound is not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostree_bridge_fuzz::FuzzRepo;
use std::cell::RefCell;
use storage_bridge::tar::tar_to_commit::{LayerRole, ObjectImporter};

thread_local! {
    static REPO: RefCell<FuzzRepo> = RefCell::new(FuzzRepo::new());
}

fuzz_target!(|data: &[u8]| {
    REPO.with_borrow_mut(|r| {
        let mut imp = ObjectImporter::new(&r.repo);
        match imp.import_layer(data, LayerRole::Commit, "layer 0 (fuzz)") {
            Ok(st) => {
                assert!(st.commit.is_some(), "a commit layer without a commit");
                let _ = imp.finish();
            }
            Err(_) => imp.abandon(),
        }
        let mut imp = ObjectImporter::new(&r.repo);
        if let Ok(st) = imp.import_layer(data, LayerRole::Chunk, "layer 1 (fuzz)") {
            assert_eq!(
                st.metadata_objects, 0,
                "metadata objects from a chunk layer"
            );
            assert!(st.commit.is_none(), "a commit from a chunk layer");
            assert_eq!(st.objects.len() as u64, st.content_objects);
        }
        r.tick();
    });
});
