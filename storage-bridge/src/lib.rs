//! storage-bridge: every mapping between ostree commits and OCI images.
//!
//! The export pipeline (this crate's first half):
//!
//! ```text
//!  ostree repo ──commit.rs──▶ CommitTree (dirs, files, metadata objects, all in memory)
//!      │                          │
//!      │                 chunking/ (dpkg, rpm, user.component, directory fallback)
//!      │                          ▼
//!      │                 LayerPlan: layer 0 = commit + structure, 1..n = component chunks
//!      ▼                          │
//!  tar/commit_to_tar.rs ◀─────────┘   one tar stream per layer, byte-stable ("tar format v1")
//!      │
//!  oci/layer.rs          compress (gzip | zstd | none) while hashing diff_id and blob digest
//!      │
//!  oci/ocidir.rs         blobs written under temp names, renamed once their digest is known
//!  oci/config.rs         labels, annotations, history, config and manifest (pure)
//!      │
//!  transport.rs          oci: in place; every other transport through `skopeo copy`,
//!                        published under the destination name only when complete
//! ```
//!
//! Reading images: `proxy.rs` is a synchronous client for skopeo's image proxy (manifest,
//! config and blobs of any image skopeo reads, streamed and verified by skopeo);
//! `proxy/cstor.rs` finds what skopeo 1.9.3 cannot say about a containers-storage layer.
//!
//! `pipeline/export.rs` drives the whole chain; the library never prints: progress goes to a
//! [`progress::Progress`] sink the caller provides.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod chunking;
pub mod commit;
pub mod compression;
#[cfg(feature = "fixture")]
pub mod fixture;
pub mod imgref;
pub mod labels;
pub mod layer_cache;
pub mod merge;
pub mod mtree;
pub mod oci;
pub mod pipeline;
pub mod progress;
pub mod proxy;
pub mod sigverify;
pub mod tar;
pub mod transport;

pub use pipeline::export::{export, ExportOptions, ExportReport};
pub use pipeline::pull::{pull, PullOptions, PullReport};
pub use pipeline::unencapsulate::{unencapsulate, UnencapsulateOptions, UnencapsulateReport};
