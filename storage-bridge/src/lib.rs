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
//! The import pipeline (the second half):
//!
//! ```text
//!  image ref ──sigverify.rs──▶ pipeline/source.rs: oci: in place | proxy.rs (skopeo's image
//!      │                       proxy, only the layers needed) | skopeo copy (staged)
//!      ▼
//!  manifest + config ─▶ plan: which layers layer_cache.rs already holds (keyed by diff_id)
//!      │
//!  oci/blob_read.rs      decompress by media type, verify blob digest, size and diff_id
//!      ├─ ostree layers: tar/tar_to_commit.rs ─▶ verified objects (+ object-set layer commits)
//!      └─ derived layers: tar/layer_to_tree.rs ─▶ one layer commit each (whiteout markers,
//!                         path policy)
//!      ▼
//!  merge.rs              base commit + layer commits ─▶ one tree in memory (mtree.rs helpers)
//!      ▼
//!  pipeline/pull.rs      merge commit + image ref, layer refs, all in one transaction
//!                        (commit.rs: aborted and its staging discarded on any failure)
//! ```
//!
//! `pipeline/export.rs` and `pipeline/pull.rs` drive the chains; the library never prints: progress goes to a
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
pub mod scratch;
pub mod sigverify;
pub mod tar;
pub mod transport;
pub mod workers;

pub use pipeline::export::{export, ExportOptions, ExportReport};
pub use pipeline::pull::{pull, PullOptions, PullReport};
pub use pipeline::unencapsulate::{unencapsulate, UnencapsulateOptions, UnencapsulateReport};
