//! The orchestrators: each drives one direction of the bridge end to end.
//!
//! - [`export`]: ostree commit ─▶ OCI image, to any transport.

pub mod export;
