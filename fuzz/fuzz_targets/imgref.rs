//! Image references: whatever parses prints back to a string that parses to the same value,
//! and the accessors of a parsed reference do not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage_bridge::imgref::{ImageReference, OstreeImageReference, Transport};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = ImageReference::parse(s) {
        let shown = r.to_string();
        let again = ImageReference::parse(&shown)
            .unwrap_or_else(|e| panic!("{s:?} printed as {shown:?}, which does not parse: {e}"));
        assert_eq!(r, again, "{s:?} printed as {shown:?}");
        let _ = r.path_and_tag();
        if r.transport == Transport::ContainerStorage {
            r.storage_ref()
                .unwrap_or_else(|e| panic!("{s:?} parsed, but its storage ref does not: {e}"));
        }
    }
    if let Ok(r) = OstreeImageReference::parse(s) {
        let shown = r.to_string();
        let again = OstreeImageReference::parse(&shown)
            .unwrap_or_else(|e| panic!("{s:?} printed as {shown:?}, which does not parse: {e}"));
        assert_eq!(r, again, "{s:?} printed as {shown:?}");
    }
});
