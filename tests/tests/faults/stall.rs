//! A source that stalls mid-blob.

use super::*;

// ─── a source that stalls ───────────────────────────────────────────────────────────────────

/// A TCP proxy in front of `upstream` that forwards everything, except that once a request
/// naming `needle` has gone upstream it forwards only `budget` bytes of the answer and then
/// holds the connection open, sending nothing. Every thread stops when the proxy is dropped
/// or after two minutes.
struct StallProxy {
    addr: String,
    stop: Arc<AtomicBool>,
    stalled: Arc<AtomicUsize>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl StallProxy {
    fn start(upstream: &str, needle: &str, budget: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(120);
        let (up, needle) = (upstream.to_string(), needle.as_bytes().to_vec());
        let (st, sd) = (stop.clone(), stalled.clone());
        let accept = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (up, needle, st, sd) =
                            (up.clone(), needle.clone(), st.clone(), sd.clone());
                        conns.push(std::thread::spawn(move || {
                            relay(client, &up, &needle, budget, &st, &sd, deadline)
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            st.store(true, Ordering::SeqCst);
            for c in conns {
                c.join().ok();
            }
        });
        StallProxy {
            addr,
            stop,
            stalled,
            accept: Some(accept),
        }
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.accept.take() {
            a.join().ok();
        }
    }
}

/// One connection: client ─▶ upstream in a scoped helper thread, upstream ─▶ client here.
fn relay(
    client: TcpStream,
    upstream: &str,
    needle: &[u8],
    budget: usize,
    stop: &AtomicBool,
    stalled: &AtomicUsize,
    deadline: Instant,
) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let tick = Some(Duration::from_millis(100));
    for s in [&client, &server] {
        s.set_read_timeout(tick).ok();
        s.set_nodelay(true).ok();
    }
    let live = || !stop.load(Ordering::SeqCst) && Instant::now() < deadline;
    let stall = AtomicBool::new(false);
    std::thread::scope(|sc| {
        // Requests: forwarded as they come; one naming the needle arms the stall first.
        sc.spawn(|| {
            let (mut from, mut to) = (&client, &server);
            let mut buf = vec![0u8; 16 << 10];
            let mut tail: Vec<u8> = Vec::new();
            while live() {
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        tail.extend_from_slice(&buf[..n]);
                        if tail.windows(needle.len()).any(|w| w == needle) {
                            stall.store(true, Ordering::SeqCst);
                        }
                        let keep = tail.len().saturating_sub(needle.len());
                        tail.drain(..keep);
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if is_timeout(&e) => {}
                    Err(_) => break,
                }
            }
            server.shutdown(std::net::Shutdown::Write).ok();
        });
        // Answers: forwarded, but only `budget` bytes once the stall is armed.
        let (mut from, mut to) = (&server, &client);
        let mut buf = vec![0u8; 16 << 10];
        let mut left = budget;
        while live() {
            let armed = stall.load(Ordering::SeqCst);
            if armed && left == 0 {
                // Hold the connection, read nothing, send nothing.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            let cap = if armed {
                left.min(buf.len())
            } else {
                buf.len()
            };
            match from.read(&mut buf[..cap]) {
                Ok(0) => break,
                Ok(n) => {
                    if armed {
                        left -= n;
                        if left == 0 {
                            stalled.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e) if is_timeout(&e) => {}
                Err(_) => break,
            }
        }
        client.shutdown(std::net::Shutdown::Both).ok();
        server.shutdown(std::net::Shutdown::Both).ok();
    });
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Four components of 300 kB of incompressible bytes (the registry gets gzip layers whatever
/// we push), written under `dir`.
fn noise_text(dir: &Path) -> String {
    let mut t = String::from("subject noise\n");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..4 {
        let p = dir.join(format!("noise{i}"));
        let data: Vec<u8> = (0..300_000).map(|_| rng.below(256) as u8).collect();
        std::fs::write(&p, data).unwrap();
        t.push_str(&format!(
            "file usr/share/n{i}/data from={} xattr.user.component=n{i}\n",
            p.display()
        ));
    }
    t
}

#[test]
fn a_stalled_registry_fails_the_pull_within_the_idle_timeout() {
    let env = TestEnv::new();
    let (src, csum) = env
        .repo_with("noise", "os", &noise_text(env.path()))
        .unwrap();
    let reg = Registry::start(&env.path().join("registry")).unwrap();
    let at_registry = format!("docker://{}/faults/os:1", reg.addr);
    env.encapsulate(&src, "os", &at_registry, &["--dest-tls-verify=false"])
        .unwrap();
    // The largest layer as the registry holds it: the one to stall, 64 KiB into its answer.
    let manifest: Value = serde_json::from_str(
        &run_stdout(
            env.podman
                .skopeo()
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(&at_registry),
        )
        .unwrap(),
    )
    .unwrap();
    let (index, layer) = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .max_by_key(|(_, l)| l["size"].as_u64().unwrap())
        .unwrap();
    let digest = layer["digest"].as_str().unwrap().to_string();
    assert!(layer["size"].as_u64().unwrap() > 200_000, "{layer}");
    let proxy = StallProxy::start(&reg.addr, &format!("/blobs/{digest}"), 64 << 10);

    let repo = env.path().join("repo");
    init_repo(&repo);
    let t0 = Instant::now();
    let o = env
        .ostree_container()
        .args([
            "image",
            "pull",
            "--idle-timeout",
            "3",
            "--src-tls-verify=false",
        ])
        .arg(&repo)
        .arg(format!("docker://{}/faults/os:1", proxy.addr))
        .output()
        .unwrap();
    let took = t0.elapsed();
    let e = String::from_utf8_lossy(&o.stderr);
    eprintln!("stalled pull: failed after {took:?}: {}", e.trim());
    assert!(!o.status.success(), "the pull went through a stalled blob");
    assert!(
        proxy.stalled.load(Ordering::SeqCst) >= 1,
        "the proxy never stalled"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(took >= Duration::from_secs(3), "{took:?}");
    assert!(
        e.contains("no progress") && e.contains("within 3s"),
        "the error says it stalled: {e}"
    );
    assert!(e.contains(&format!("layer {index} ({digest})")), "{e}");
    assert!(assert_repo_sound(&repo).is_empty());
    assert!(staging_entries(&repo).is_empty());
    assert!(names_with_prefix(&repo.join("state"), "").is_empty());
    drop(proxy);

    // Straight from the registry, the same pull goes through.
    let out = run_stdout(
        env.ostree_container()
            .args(["image", "pull", "--json", "--src-tls-verify=false"])
            .arg(&repo)
            .arg(&at_registry),
    )
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["merged_commit"], csum.as_str());
    assert_repo_sound(&repo);
}
