//! Progress reporting: the library calls a [`Progress`] sink; the CLI renders it.

/// Receives progress events. All methods have empty defaults; implementations must be cheap
/// (they are called from worker threads on every buffer).
pub trait Progress: Send + Sync {
    /// A named phase started (e.g. "reading commit", "writing layers", "copying with skopeo").
    fn phase(&self, _name: &str) {}
    /// Layer `index` (0-based) named `name` will carry about `total` uncompressed bytes.
    fn layer_start(&self, _index: usize, _name: &str, _total: u64) {}
    /// `bytes` more uncompressed bytes of layer `index` were written.
    fn layer_bytes(&self, _index: usize, _bytes: u64) {}
    /// Layer `index` is complete.
    fn layer_done(&self, _index: usize) {}
}

/// A sink that drops everything.
#[derive(Debug, Default)]
pub struct Silent;
impl Progress for Silent {}
