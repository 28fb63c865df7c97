//! OCI pieces: layer blobs ([`layer`]), image layout directories ([`ocidir`]), and the
//! config/manifest documents ([`config`]).

pub mod blob_read;
pub mod config;
pub mod layer;
pub mod ocidir;

/// A blob's content address and size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlobRef {
    /// `sha256:<hex>`
    pub digest: String,
    pub size: u64,
}
