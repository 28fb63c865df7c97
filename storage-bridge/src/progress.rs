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
    /// An import's plan: which layers are present and which will be read (the `layers` and
    /// `bytes_to_fetch` of the pull report, as JSON).
    fn plan(&self, _plan: &serde_json::Value) {}
}

/// A layer stream that knows how many bytes of its blob it has consumed.
pub trait BlobPosition {
    fn blob_bytes_read(&self) -> u64;
}

impl<T: BlobPosition> BlobPosition for &mut T {
    fn blob_bytes_read(&self) -> u64 {
        (**self).blob_bytes_read()
    }
}

/// Reads a layer and reports the blob bytes consumed as [`Progress::layer_bytes`] of layer
/// `index` (compressed bytes, the unit of `layer_start`'s total when importing).
pub struct ReadProgress<'a, R> {
    inner: R,
    index: usize,
    progress: &'a dyn Progress,
    reported: u64,
}

impl<'a, R: std::io::Read + BlobPosition> ReadProgress<'a, R> {
    pub fn new(inner: R, index: usize, progress: &'a dyn Progress) -> Self {
        ReadProgress {
            inner,
            index,
            progress,
            reported: 0,
        }
    }
}

impl<R: std::io::Read + BlobPosition> std::io::Read for ReadProgress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let now = self.inner.blob_bytes_read();
        if now > self.reported {
            self.progress.layer_bytes(self.index, now - self.reported);
            self.reported = now;
        }
        Ok(n)
    }
}

/// A sink that drops everything.
#[derive(Debug, Default)]
pub struct Silent;
impl Progress for Silent {}
