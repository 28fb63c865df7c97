//! Tells the interop tests whether the peer (ostree-ext) sources are beside the project, so a
//! test that cannot run is reported as ignored with the reason instead of passing.
fn main() {
    let peer = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/bench/peer-ostree-ext/Cargo.toml");
    println!("cargo::rerun-if-changed={}", peer.display());
    println!("cargo::rustc-check-cfg=cfg(peer_available)");
    if peer.exists() {
        println!("cargo::rustc-cfg=peer_available");
    }
}
