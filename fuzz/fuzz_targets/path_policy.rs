//! The path policy of derived layers on arbitrary paths: what it keeps stays inside the image
//! (no `..`, no leading `/`, no empty component), under `usr`, `var` or a kept-empty top
//! directory; `etc` becomes `usr/etc`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostree_bridge_fuzz::EMPTY_DIRS;
use storage_bridge::tar::layer_to_tree::fuzz_path_policy;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((norm, kept)) = fuzz_path_policy(raw) else {
        assert!(
            raw.len() > 4096 || raw.contains('\0') || raw.split('/').any(|c| c == ".."),
            "{raw:?} refused for no rule"
        );
        return;
    };
    for p in [&norm, kept.as_ref().unwrap_or(&norm)] {
        assert!(!p.starts_with('/'), "{raw:?} -> {p:?}: leading /");
        assert!(
            !p.split('/').any(|c| c == ".." || c == "."),
            "{raw:?} -> {p:?}: a . or .. component"
        );
        assert!(
            p.is_empty() || !p.split('/').any(str::is_empty),
            "{raw:?} -> {p:?}: an empty component"
        );
    }
    let Some(kept) = kept else {
        return;
    };
    let (top, rest) = kept.split_once('/').unwrap_or((&kept, ""));
    match top {
        "usr" | "var" => {}
        t if EMPTY_DIRS.contains(&t) => assert!(rest.is_empty(), "{raw:?} -> {kept:?}"),
        _ => panic!("{raw:?} kept as {kept:?}, outside usr, var and the empty dirs"),
    }
    // `etc` and below go to `usr/etc`; nothing else changes.
    let ntop = norm.split('/').next().unwrap_or_default();
    if ntop == "etc" {
        assert_eq!(kept, format!("usr/{norm}"), "{raw:?}");
    } else {
        assert_eq!(kept, norm, "{raw:?}");
    }
});
