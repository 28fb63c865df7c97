//! A synchronous client for skopeo's image proxy (`skopeo experimental-image-proxy`): read
//! manifests, configs and blobs from any transport skopeo reads, streaming, without tokio.
//!
//! ```text
//!  ImageProxy ──socketpair(SEQPACKET)──▶ skopeo experimental-image-proxy --sockfd 0
//!     │  request  {"method": M, "args": [...]}            (wire.rs: framing, pure)
//!     │  reply    {"success", "value", "pipeid", "error"} + the read end of a pipe (SCM_RIGHTS)
//!     ▼
//!  pipe ──▶ BlobReader (impl Read)  ──FinishPipe──▶ skopeo's digest and size verdict
//! ```
//!
//! skopeo's writer closes a pipe only while it answers `FinishPipe`, and it answers only once
//! the whole payload is written; so a reader cannot wait for EOF before sending it. This client
//! sends `FinishPipe` and then drains the pipe before it reads the reply, holding the socket
//! (skopeo handles one request at a time anyway):
//! - manifests and configs: `FinishPipe` at once, then read the pipe to EOF (bounded);
//! - blobs: the caller reads exactly the requested size through [`BlobReader`]; then
//!   `FinishPipe`, drain any surplus, read the verdict. A size skopeo reports that differs from
//!   the requested one fails before any byte is read.
//!
//! A dropped, unfinished [`BlobReader`] closes its pipe first (skopeo's writer then fails with
//! EPIPE instead of blocking) and then finishes it, so the proxy stays usable. No read or reply
//! waits longer than [`ProxyOptions::idle_timeout`] without progress.
//!
//! skopeo gets its end of the socket as its standard input (its default `--sockfd 0`): std's
//! `Command` places a `Stdio` fd in the child after fork, so no descriptor ever lacks
//! `O_CLOEXEC` in this process (another thread's child cannot inherit it and keep the socket
//! open past skopeo's exit), and no `pre_exec` (unsafe) is needed.
//!
//! skopeo 1.9.3 (protocol 0.2.3) cannot hand out the layers of a `containers-storage:` image
//! that came from a compressed one by their manifest digests; [`ImageProxy::blob_by_diff_id`]
//! reads them by diff_id with the size containers-storage recorded (see [`cstor`]).

pub mod cstor;
mod wire;

pub use cstor::{cstor_store, cstor_uncompressed_size, CstorStore};

use crate::transport::SkopeoOptions;
use anyhow::{anyhow, bail, Context, Result};
use rustix::event::{PollFd, PollFlags};
use rustix::fd::{AsFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendFlags,
    SocketFlags, SocketType,
};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{IoSliceMut, Read};
use std::mem::MaybeUninit;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wire::{Version, MAX_JSON_INT, MAX_MSG};

/// Largest manifest we read.
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Largest image config we read (history and labels can be long).
pub const MAX_CONFIG: u64 = 16 << 20;
/// Bytes of skopeo's stderr kept for error messages.
const STDERR_TAIL: usize = 8 << 10;
/// Surplus bytes drained after a blob before the pipe is closed on the writer.
const MAX_SURPLUS: u64 = 1 << 20;
/// How long a closed socket gives skopeo to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// How to start the proxy.
#[derive(Debug)]
#[non_exhaustive]
pub struct ProxyOptions {
    /// Registry options (`--authfile`, `--tls-verify`, `--cert-dir`).
    pub skopeo: SkopeoOptions,
    /// The skopeo command, with any global options or wrapper (a private mount namespace, a
    /// test's configuration); `experimental-image-proxy` and its options are appended.
    /// Default: `skopeo` from `PATH`. Its stdin, stdout and stderr are replaced.
    pub skopeo_cmd: Option<Command>,
    /// Longest wait for any progress: a reply, or the next bytes of a blob.
    pub idle_timeout: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            skopeo: SkopeoOptions::default(),
            skopeo_cmd: None,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Failures a caller may branch on; everything else is an `anyhow` chain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// skopeo answered with an error (its text kept).
    #[error("skopeo's {method} failed: {message}")]
    Remote {
        method: &'static str,
        message: String,
    },
    /// Nothing arrived within the idle timeout.
    #[error("no progress from skopeo's image proxy within {}s while waiting for {waiting}", .timeout.as_secs_f64())]
    Timeout { waiting: String, timeout: Duration },
    /// skopeo exited (or closed its socket) while a reply was due.
    #[error("skopeo's image proxy exited ({status}); its stderr ends: {stderr:?}")]
    Exited { status: String, stderr: String },
}

/// An image opened in the proxy; close it with [`ImageProxy::close_image`].
#[derive(Debug)]
pub struct OpenedImage {
    id: u64,
    imgref: String,
}

impl OpenedImage {
    /// The reference it was opened by.
    pub fn imgref(&self) -> &str {
        &self.imgref
    }
}

/// A running `skopeo experimental-image-proxy`. Calls may come from several threads; skopeo
/// answers them one at a time.
pub struct ImageProxy {
    conn: Arc<Conn>,
    version: String,
    protocol: Version,
}

impl ImageProxy {
    /// Start skopeo, `Initialize`, and check that it speaks protocol 0.2.3 or later.
    pub fn new(opts: ProxyOptions) -> Result<Self> {
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .context("creating the image proxy's socket pair")?;
        let mut cmd = match opts.skopeo_cmd {
            Some(c) => c,
            None => Command::new(crate::transport::skopeo()?),
        };
        cmd.arg("experimental-image-proxy");
        let s = &opts.skopeo;
        if let Some(a) = &s.authfile {
            cmd.arg(format!("--authfile={}", a.display()));
        }
        if let Some(v) = s.tls_verify {
            cmd.arg(format!("--tls-verify={v}"));
        }
        if let Some(c) = &s.cert_dir {
            cmd.arg(format!("--cert-dir={}", c.display()));
        }
        cmd.args(["--sockfd", "0"])
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        // The Command holds our copy of skopeo's end: close it, so skopeo's exit reads as EOF.
        drop(cmd);
        let tail = Arc::new(Mutex::new(Vec::new()));
        let stderr_thread = child.stderr.take().map(|mut e| {
            let tail = Arc::clone(&tail);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = e.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut t = lock(&tail);
                    t.extend_from_slice(&buf[..n]);
                    let excess = t.len().saturating_sub(STDERR_TAIL);
                    t.drain(..excess);
                }
            })
        });
        let conn = Arc::new(Conn {
            sock: ours,
            io: Mutex::new(None),
            child: Mutex::new(Some(child)),
            stderr_tail: tail,
            stderr_thread: Mutex::new(stderr_thread),
            idle: opts.idle_timeout,
        });
        let (v, _) = conn
            .call("Initialize", &[])
            .context("starting skopeo's image proxy")?;
        let protocol = wire::check_protocol(&v)?;
        Ok(ImageProxy {
            conn,
            version: protocol.to_string(),
            protocol,
        })
    }

    /// The protocol version skopeo announced (`0.2.3` for skopeo 1.9.3).
    pub fn protocol_version(&self) -> &str {
        &self.version
    }

    /// skopeo's process id (for diagnostics), while it has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.conn.child).as_ref().map(Child::id)
    }

    /// Open `imgref` (`TRANSPORT:NAME`, as skopeo takes it).
    pub fn open_image(&self, imgref: &str) -> Result<OpenedImage> {
        let (v, _) = self
            .conn
            .call("OpenImage", &[json!(imgref)])
            .with_context(|| format!("opening {imgref}"))?;
        match wire::value_u64(&v) {
            Some(id) if id != 0 => Ok(OpenedImage {
                id,
                imgref: imgref.to_string(),
            }),
            _ => bail!("opening {imgref}: the proxy returned {v}, not an image id"),
        }
    }

    /// Open `imgref`, or `None` when it does not exist (protocol 0.2.4, skopeo 1.10 and later;
    /// skopeo 1.9.3 gets an error saying so).
    pub fn open_image_optional(&self, imgref: &str) -> Result<Option<OpenedImage>> {
        if self.protocol < wire::OPEN_OPTIONAL_PROTOCOL {
            bail!(
                "opening {imgref}: OpenImageOptional needs proxy protocol {}, this skopeo speaks {}",
                wire::OPEN_OPTIONAL_PROTOCOL,
                self.protocol
            );
        }
        let (v, _) = self
            .conn
            .call("OpenImageOptional", &[json!(imgref)])
            .with_context(|| format!("opening {imgref}"))?;
        match wire::value_u64(&v) {
            Some(0) => Ok(None),
            Some(id) => Ok(Some(OpenedImage {
                id,
                imgref: imgref.to_string(),
            })),
            None => bail!("opening {imgref}: the proxy returned {v}, not an image id"),
        }
    }

    /// The manifest's digest and bytes (at most [`MAX_MANIFEST`]). skopeo converts a Docker
    /// schema 2 manifest to OCI on the wire and still gives the original's digest; an OCI
    /// manifest comes byte for byte.
    pub fn manifest(&self, img: &OpenedImage) -> Result<(String, Vec<u8>)> {
        let what = || format!("reading the manifest of {}", img.imgref);
        let (v, pipe) = self
            .conn
            .call("GetManifest", &[json!(img.id)])
            .with_context(what)?;
        let digest = v
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("GetManifest returned {v}, not a digest"))
            .with_context(what)?;
        let data = self
            .conn
            .read_pipe_to_end(pipe, MAX_MANIFEST)
            .with_context(what)?;
        Ok((digest, data))
    }

    /// The whole image config (`GetFullConfig`: with `rootfs.diff_ids` and `history`), at
    /// most [`MAX_CONFIG`].
    pub fn full_config(&self, img: &OpenedImage) -> Result<Vec<u8>> {
        self.pipe_call("GetFullConfig", img, MAX_CONFIG)
            .with_context(|| format!("reading the config of {}", img.imgref))
    }

    /// Only the config's `config` object (`GetConfig`; prefer [`Self::full_config`]).
    pub fn runtime_config(&self, img: &OpenedImage) -> Result<Vec<u8>> {
        self.pipe_call("GetConfig", img, MAX_CONFIG)
            .with_context(|| format!("reading the runtime config of {}", img.imgref))
    }

    fn pipe_call(&self, method: &'static str, img: &OpenedImage, max: u64) -> Result<Vec<u8>> {
        let (_, pipe) = self.conn.call(method, &[json!(img.id)])?;
        self.conn.read_pipe_to_end(pipe, max)
    }

    /// Stream blob `digest`, which must be exactly `size` bytes (skopeo 1.9.3 fails any other
    /// count, unknown sizes included). Read it, then [`BlobReader::finish`] for skopeo's digest
    /// and size verdict.
    pub fn blob(&self, img: &OpenedImage, digest: &str, size: u64) -> Result<BlobReader> {
        let what = format!("reading blob {digest} of {}", img.imgref);
        if size > MAX_JSON_INT {
            bail!("{what}: size {size} is over the proxy's integer limit");
        }
        let (v, pipe) = self
            .conn
            .call("GetBlob", &[json!(img.id), json!(digest), json!(size)])
            .with_context(|| what.clone())?;
        let pipe = pipe
            .ok_or_else(|| anyhow!("GetBlob returned no pipe"))
            .with_context(|| what.clone())?;
        let mut reader = BlobReader {
            conn: Arc::clone(&self.conn),
            pipe: Some(pipe.file),
            pipeid: pipe.id,
            size,
            pos: 0,
            state: State::Open,
            what,
        };
        match wire::value_size(&v) {
            Ok(Some(n)) if n != size => {
                let e = anyhow!("the proxy says the blob is {n} bytes, {size} were requested");
                reader.abort();
                Err(e.context(reader.what.clone()))
            }
            Ok(_) => Ok(reader),
            Err(e) => {
                reader.abort();
                Err(e.context(reader.what.clone()))
            }
        }
    }

    /// Stream a `containers-storage:` layer by its diff_id, with the uncompressed size the
    /// image's store recorded (`layers.json`; see [`cstor`]). This works for every layer of a
    /// stored image, also where the manifest names a compressed blob the store no longer has.
    pub fn blob_by_diff_id(&self, img: &OpenedImage, diff_id: &str) -> Result<BlobReader> {
        let what = || format!("reading layer {diff_id} of {}", img.imgref);
        let store = cstor::cstor_store(&img.imgref).with_context(what)?;
        let size = cstor::cstor_uncompressed_size_in(&store.graphroot, &store.driver, diff_id)
            .with_context(what)?
            .ok_or_else(|| {
                anyhow!(
                    "the store at {} records no size for it",
                    store.graphroot.display()
                )
            })
            .with_context(what)?;
        self.blob(img, diff_id, size)
    }

    /// Close an image in the proxy.
    pub fn close_image(&self, img: OpenedImage) -> Result<()> {
        self.conn
            .call("CloseImage", &[json!(img.id)])
            .with_context(|| format!("closing {}", img.imgref))?;
        Ok(())
    }

    /// Close the socket and wait for skopeo; an unclean exit is an error. Dropping the proxy
    /// does the same, ignoring the exit status. Blob readers still open fail afterwards.
    pub fn shutdown(self) -> Result<()> {
        self.conn.shutdown()
    }
}

/// The socket, the child and what is known about their state.
struct Conn {
    sock: OwnedFd,
    /// Held for one request and its reply; `Some(why)` once the connection is out of step.
    io: Mutex<Option<String>>,
    child: Mutex<Option<Child>>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    stderr_thread: Mutex<Option<JoinHandle<()>>>,
    idle: Duration,
}

/// The read end of a reply's pipe and its id for `FinishPipe`.
struct Pipe {
    file: File,
    id: u32,
}

/// A lock that survives a panic of another holder (the data is a plain state).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Conn {
    /// One request and its reply. A transport failure (not a reply saying `success: false`)
    /// leaves the connection unusable, and later calls say why.
    fn call(&self, method: &'static str, args: &[Value]) -> Result<(Value, Option<Pipe>)> {
        let mut broken = lock(&self.io);
        self.call_locked(&mut broken, method, args)
    }

    fn call_locked(
        &self,
        broken: &mut Option<String>,
        method: &'static str,
        args: &[Value],
    ) -> Result<(Value, Option<Pipe>)> {
        self.send_locked(broken, method, args)?;
        self.reply_locked(broken, method)
    }

    fn send_locked(
        &self,
        broken: &mut Option<String>,
        method: &'static str,
        args: &[Value],
    ) -> Result<()> {
        if let Some(why) = broken {
            bail!("the image proxy is unusable after an earlier failure: {why}");
        }
        let msg = wire::encode_request(method, args)?;
        let r = loop {
            match rustix::net::send(&self.sock, &msg, SendFlags::NOSIGNAL) {
                Err(Errno::INTR) => continue,
                r => break r,
            }
        };
        match r {
            Ok(n) if n == msg.len() => Ok(()),
            Ok(n) => self.poison(broken, anyhow!("sent {n} of {} bytes", msg.len())),
            Err(Errno::PIPE) | Err(Errno::CONNRESET) => {
                let e = self.exited();
                self.poison(broken, e.into())
            }
            Err(e) => self.poison(broken, anyhow!(e).context(format!("sending {method}"))),
        }
    }

    fn reply_locked(
        &self,
        broken: &mut Option<String>,
        method: &'static str,
    ) -> Result<(Value, Option<Pipe>)> {
        let (reply, fd) = match self.recv(method) {
            Ok(r) => r,
            Err(e) => return self.poison(broken, e),
        };
        if !reply.success {
            return Err(ProxyError::Remote {
                method,
                message: reply.error,
            }
            .into());
        }
        let pipe = match (reply.pipeid, fd) {
            (0, None) => None,
            (id, Some(fd)) if id != 0 => Some(Pipe {
                file: File::from(fd),
                id,
            }),
            (id, fd) => {
                return self.poison(
                    broken,
                    anyhow!(
                        "the {method} reply has pipe id {id} and {} file descriptor",
                        if fd.is_some() { "a" } else { "no" }
                    ),
                )
            }
        };
        Ok((reply.value, pipe))
    }

    fn poison<T>(&self, broken: &mut Option<String>, e: anyhow::Error) -> Result<T> {
        *broken = Some(format!("{e:#}"));
        Err(e)
    }

    fn recv(&self, method: &str) -> Result<(wire::Reply, Option<OwnedFd>)> {
        wait_readable(self.sock.as_fd(), self.idle, || {
            format!("the {method} reply")
        })?;
        let mut buf = vec![0u8; MAX_MSG];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let msg = loop {
            match rustix::net::recvmsg(
                &self.sock,
                &mut [IoSliceMut::new(&mut buf)],
                &mut cmsg,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Err(Errno::INTR) => continue,
                r => break r,
            }
        };
        let msg = match msg {
            Ok(m) => m,
            Err(Errno::CONNRESET) => return Err(self.exited().into()),
            Err(e) => return Err(anyhow!(e).context(format!("receiving the {method} reply"))),
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        for m in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(it) = m {
                fds.extend(it);
            }
        }
        if msg.bytes == 0 && fds.is_empty() {
            return Err(self.exited().into());
        }
        if msg.flags.contains(ReturnFlags::TRUNC) || msg.flags.contains(ReturnFlags::CTRUNC) {
            bail!("the {method} reply was truncated (over {MAX_MSG} bytes or too many fds)");
        }
        if fds.len() > 1 {
            bail!("the {method} reply carried {} file descriptors", fds.len());
        }
        let reply = wire::parse_reply(&buf[..msg.bytes])?;
        Ok((reply, fds.pop()))
    }

    /// What became of skopeo, once its socket closed: exit status (waiting a little for it)
    /// and the end of its stderr.
    fn exited(&self) -> ProxyError {
        let status = {
            let mut child = lock(&self.child);
            match child.as_mut() {
                Some(c) => match wait_timeout(c, Duration::from_secs(2)) {
                    Ok(Some(s)) => s.to_string(),
                    Ok(None) => "still running, socket closed".to_string(),
                    Err(e) => format!("status unknown: {e}"),
                },
                None => "already reaped".to_string(),
            }
        };
        // The stderr reader ends with the child; give it a moment to take the last lines.
        let deadline = Instant::now() + Duration::from_secs(1);
        while lock(&self.stderr_thread)
            .as_ref()
            .is_some_and(|t| !t.is_finished())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let stderr = String::from_utf8_lossy(&lock(&self.stderr_tail))
            .trim()
            .to_string();
        ProxyError::Exited { status, stderr }
    }

    /// Finish a pipe whose content is small: `FinishPipe` first, then read to EOF (at most
    /// `max` bytes), then the verdict.
    fn read_pipe_to_end(&self, pipe: Option<Pipe>, max: u64) -> Result<Vec<u8>> {
        let pipe = pipe.ok_or_else(|| anyhow!("the reply came without a pipe"))?;
        let mut out = Vec::new();
        let n = self.finish_pipe(pipe.id, Some(pipe.file), max, Some(&mut out))?;
        if n > max {
            bail!("the proxy sent over {max} bytes");
        }
        Ok(out)
    }

    /// Send `FinishPipe`, drain `pipe` to EOF (keeping the bytes in `keep` when given; closing
    /// the pipe early once over `max`), then read the verdict. Returns the bytes drained.
    fn finish_pipe(
        &self,
        pipeid: u32,
        pipe: Option<File>,
        max: u64,
        mut keep: Option<&mut Vec<u8>>,
    ) -> Result<u64> {
        let mut broken = lock(&self.io);
        self.send_locked(&mut broken, "FinishPipe", &[json!(pipeid)])?;
        let mut total = 0u64;
        if let Some(mut pipe) = pipe {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = match read_idle(&mut pipe, &mut buf, self.idle, || {
                    "the end of the data".to_string()
                }) {
                    Ok(n) => n,
                    // The reply to FinishPipe is still due: the socket is out of step.
                    Err(e) => return self.poison(&mut broken, e),
                };
                if n == 0 {
                    break;
                }
                total += n as u64;
                if let Some(k) = keep.as_deref_mut() {
                    k.extend_from_slice(&buf[..n]);
                }
                if total > max {
                    // Closing our end makes skopeo's writer fail instead of blocking.
                    break;
                }
            }
        }
        let verdict = self.reply_locked(&mut broken, "FinishPipe");
        if total > max {
            // The size is the cause; skopeo's complaint (a broken pipe) is its consequence.
            return Ok(total);
        }
        verdict?;
        Ok(total)
    }

    /// Close the socket and reap skopeo (killing it after a grace period).
    fn shutdown(&self) -> Result<()> {
        // Wakes skopeo's read loop with EOF; errors only if already shut down.
        let _ = rustix::net::shutdown(&self.sock, rustix::net::Shutdown::Both);
        let Some(mut child) = lock(&self.child).take() else {
            return Ok(());
        };
        // A proxy that already failed us (stalled, out of step) gets no grace.
        let grace = if lock(&self.io).is_some() {
            Duration::from_millis(200)
        } else {
            EXIT_GRACE
        };
        let status = match wait_timeout(&mut child, grace)? {
            Some(s) => s,
            None => {
                child.kill().ok();
                let s = child.wait().context("reaping skopeo")?;
                bail!("skopeo's image proxy did not exit within {grace:?} of its socket closing; killed ({s})");
            }
        };
        if !status.success() {
            let tail = String::from_utf8_lossy(&lock(&self.stderr_tail))
                .trim()
                .to_string();
            bail!("skopeo's image proxy exited with {status}; its stderr ends: {tail:?}");
        }
        Ok(())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Nobody is left to hear the verdict.
        let _ = self.shutdown();
    }
}

/// Wait for `fd` to be readable (or closed) for at most `idle`.
fn wait_readable(
    fd: std::os::fd::BorrowedFd<'_>,
    idle: Duration,
    waiting: impl FnOnce() -> String,
) -> Result<()> {
    let deadline = Instant::now() + idle;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = rustix::event::Timespec::try_from(left)
            .map_err(|_| anyhow!("idle timeout {idle:?} is out of range"))?;
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) if left.is_zero() => {
                return Err(ProxyError::Timeout {
                    waiting: waiting(),
                    timeout: idle,
                }
                .into())
            }
            Ok(0) | Err(Errno::INTR) => continue,
            Ok(_) => return Ok(()),
            Err(e) => return Err(anyhow!(e).context("poll")),
        }
    }
}

/// One read from a pipe, waiting at most `idle` for the first byte.
fn read_idle(
    pipe: &mut File,
    buf: &mut [u8],
    idle: Duration,
    waiting: impl FnOnce() -> String,
) -> Result<usize> {
    wait_readable(pipe.as_fd(), idle, waiting)?;
    loop {
        match pipe.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r.context("reading the proxy's pipe"),
        }
    }
}

fn wait_timeout(child: &mut Child, t: Duration) -> Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + t;
    loop {
        if let Some(s) = child.try_wait().context("waiting for skopeo")? {
            return Ok(Some(s));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

enum State {
    /// Bytes may remain; `FinishPipe` not sent.
    Open,
    /// `FinishPipe` answered (or can no longer be sent); reads return EOF or this error.
    Done(Option<anyhow::Error>, String),
}

/// A blob streaming from the proxy: exactly the requested size, then EOF once skopeo confirmed
/// digest and size. A failure (skopeo's verdict, a stall, skopeo's exit) is a read error, and
/// [`BlobReader::finish`] returns it whole. Dropping an unfinished reader abandons the blob
/// without upsetting the proxy.
pub struct BlobReader {
    conn: Arc<Conn>,
    pipe: Option<File>,
    pipeid: u32,
    size: u64,
    pos: u64,
    state: State,
    what: String,
}

impl BlobReader {
    /// The size requested (and, once read, streamed).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Read what the caller left (a tar reader stops before the end), then take skopeo's
    /// verdict: an error names the blob and keeps skopeo's text.
    pub fn finish(mut self) -> Result<()> {
        let mut buf = vec![0u8; 64 << 10];
        // Every failure settles the state with the whole error, returned below.
        while let State::Open = self.state {
            if self.read_inner(&mut buf).is_err() {
                break;
            }
        }
        match std::mem::replace(&mut self.state, State::Done(None, String::new())) {
            State::Done(Some(e), _) => Err(e),
            _ => Ok(()),
        }
    }

    /// `Read`, with the whole error.
    fn read_inner(&mut self, buf: &mut [u8]) -> Result<usize> {
        if let State::Done(e, msg) = &self.state {
            return match e {
                Some(_) => bail!("{msg}"),
                None => Ok(0),
            };
        }
        if self.pos == self.size {
            let r = self.complete();
            return self.settle(r).map(|_| 0);
        }
        let want = (self.size - self.pos).min(buf.len() as u64) as usize;
        let Some(pipe) = self.pipe.as_mut() else {
            return self.settle(Err(anyhow!("the blob's pipe is closed")));
        };
        let (pos, size) = (self.pos, self.size);
        match read_idle(pipe, &mut buf[..want], self.conn.idle, || {
            format!("blob data (at byte {pos} of {size})")
        }) {
            Ok(0) => {
                // skopeo closes the pipe early only when it is gone: ask why.
                let pipe = self.pipe.take();
                let e = match self.conn.finish_pipe(self.pipeid, pipe, 0, None) {
                    Err(e) => e,
                    Ok(_) => anyhow!("the proxy ended the blob after {pos} of {size} bytes"),
                };
                self.settle(Err(e))
            }
            Ok(n) => {
                self.pos += n as u64;
                Ok(n)
            }
            Err(e) => {
                // Stalled or broken: the writer may never finish, so FinishPipe is not sent;
                // the pipe is closed so a late writer fails instead of blocking.
                self.pipe = None;
                self.settle(Err(e))
            }
        }
    }

    /// Every byte read: `FinishPipe`, drain any surplus, take the verdict.
    fn complete(&mut self) -> Result<()> {
        let pipe = self.pipe.take();
        let surplus = self
            .conn
            .finish_pipe(self.pipeid, pipe, MAX_SURPLUS, None)?;
        if surplus > 0 {
            bail!("the proxy sent more than the {} bytes requested", self.size);
        }
        Ok(())
    }

    /// Record the outcome; an error gets the blob's name.
    fn settle<T>(&mut self, r: Result<T>) -> Result<T> {
        match r {
            Ok(v) => {
                self.state = State::Done(None, String::new());
                Ok(v)
            }
            Err(e) => {
                let e = e.context(self.what.clone());
                let msg = format!("{e:#}");
                self.state = State::Done(Some(e), msg.clone());
                Err(anyhow!(msg))
            }
        }
    }

    /// Give up on the blob: close the pipe (skopeo's writer then fails rather than blocks) and
    /// finish it, ignoring skopeo's complaint.
    fn abort(&mut self) {
        if let State::Open = self.state {
            self.state = State::Done(None, String::new());
            self.pipe = None;
            let _ = self.conn.finish_pipe(self.pipeid, None, 0, None);
        }
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.read_inner(buf)
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
    }
}

impl Drop for BlobReader {
    fn drop(&mut self) {
        self.abort();
    }
}
