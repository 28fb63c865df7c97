//! The orchestrators: each drives one direction of the bridge end to end.
//!
//! - [`export`]: ostree commit ─▶ OCI image, to any transport.
//! - [`unencapsulate`]: OCI image of an ostree commit ─▶ that commit.

pub mod export;
pub mod unencapsulate;
