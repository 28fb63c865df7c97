//! The orchestrators: each drives one direction of the bridge end to end.
//!
//! - [`export`]: ostree commit ─▶ OCI image, to any transport.
//! - [`unencapsulate`]: OCI image of an ostree commit ─▶ that commit.
//! - [`images`]: the images a repo holds: list, metadata, remove.
//! - [`pull`]: any OCI image (ostree base + derived layers, or plain) ─▶ one merged commit.

pub mod export;
pub mod images;
pub mod pull;
pub mod source;
pub mod unencapsulate;
