//! A manifest and a config, arbitrary JSON (the two separated by the first NUL byte): the
//! layout of an image (how many ostree layers), a prior build's component layout and the
//! layers' media types. Refusing is fine; panicking is not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use storage_bridge::oci::blob_read::LayerEncoding;
use storage_bridge::pipeline::source::ostree_layer_count;
use storage_bridge::transport::prior_layout;

fuzz_target!(|data: &[u8]| {
    let (m, c) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(manifest) = serde_json::from_slice::<Value>(m) else {
        return;
    };
    let config = serde_json::from_slice::<Value>(c).unwrap_or(Value::Null);
    if let Ok(n) = ostree_layer_count(&manifest, &config, "oci:/fuzz") {
        let layers = manifest["layers"].as_array().map_or(0, Vec::len);
        assert!(n <= layers, "{n} ostree layers of {layers}");
    }
    if let Ok(l) = prior_layout(&manifest) {
        let layers = manifest["layers"].as_array().map_or(0, Vec::len);
        assert_eq!(l.len(), layers.saturating_sub(1));
    }
    for l in manifest["layers"].as_array().into_iter().flatten() {
        if let Some(mt) = l["mediaType"].as_str() {
            let _ = LayerEncoding::from_media_type(mt);
        }
    }
    let _ = LayerEncoding::from_media_type(&String::from_utf8_lossy(m));
});
