//! The hostile-input table (issue 6): images built byte by byte at test time, each imported with
//! the real CLI (`image pull`, or `unencapsulate` for pure ostree images) into a fresh repo.
//! Every case asserts, besides its own outcome:
//! - no panic, and a refusal exits non-zero with the rule in its error text;
//! - nothing written outside the repo: the test's whole temp dir (the source layouts, TMPDIR,
//!   a `victim` directory the symlinks aim at) is as it was, file by file;
//! - `ostree fsck` is clean, and a refused image leaves no ref (no image ref, no layer cache);
//! - it finishes within a time bound.
//!
//! Cases that expose a bug still open are not in the table; see the commit that added it.

use anyhow::{bail, ensure, Context, Result};
use ostree_bridge_tests::oci::{sha256_digest, ImageParts, RawLayer, MT_GZIP, MT_TAR, MT_ZSTD};
use ostree_bridge_tests::rawtar::{self, set_cksum, Hdr, RawTar};
use ostree_bridge_tests::{run, run_stdout, TestEnv, SAMPLE};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod table_content;
mod table_paths;
mod table_streams;
use table_content::{oci_metadata, ostree_content};
use table_paths::{links, paths, whiteouts};
use table_streams::{compression, metadata, tar_format};

const LABEL_COMMIT: &str = "ostree.commit";
/// Any one import must end within this.
const CASE_TIMEOUT: Duration = Duration::from_secs(90);

/// What the test knows when it builds an image.
struct Ctx {
    /// The victim directory, absolute.
    victim: String,
    /// The sample OS as an uncompressed ostree image (commit layer, chunks).
    base: ImageParts,
    base_commit: String,
}

type Build = Box<dyn Fn(&Ctx, &Path) -> Result<()>>;
type Check = Box<dyn Fn(&Tree) -> Result<()>>;

enum Via {
    Pull,
    Unencapsulate,
}

enum Expect {
    /// Non-zero exit; stderr holds `rule`, and names layer N when given.
    Refused {
        layer: Option<usize>,
        rule: &'static str,
    },
    /// Imported; `check` reads the resulting commit.
    Imported(Check),
}

struct Case {
    class: &'static str,
    name: &'static str,
    via: Via,
    env: Vec<(&'static str, String)>,
    build: Build,
    expect: Expect,
}

/// A committed tree, read with the ostree CLI.
struct Tree<'a> {
    repo: &'a Path,
    commit: String,
}

impl Tree<'_> {
    fn ostree(&self, args: &[&str]) -> Result<String> {
        run_stdout(
            Command::new("ostree")
                .arg(format!("--repo={}", self.repo.display()))
                .args(args),
        )
    }
    /// `ostree ls` of one path: `-00644 0 0 5 /usr/a`.
    fn stat(&self, p: &str) -> Result<String> {
        Ok(self
            .ostree(&["ls", "-d", &self.commit, p])?
            .trim()
            .to_string())
    }
    fn cat(&self, p: &str) -> Result<String> {
        self.ostree(&["cat", &self.commit, p])
    }
    fn has(&self, p: &str) -> bool {
        self.stat(p).is_ok()
    }
    fn expect_cat(&self, p: &str, want: &str) -> Result<()> {
        let got = self.cat(p).with_context(|| format!("{p} is missing"))?;
        ensure!(got == want, "{p} holds {got:?}, want {want:?}");
        Ok(())
    }
    fn expect_absent(&self, p: &str) -> Result<()> {
        ensure!(!self.has(p), "{p} should not exist: {}", self.stat(p)?);
        Ok(())
    }
    fn expect_stat(&self, p: &str, prefix: &str) -> Result<()> {
        let s = self.stat(p)?;
        ensure!(
            s.starts_with(prefix),
            "{p}: {s:?} does not start with {prefix:?}"
        );
        Ok(())
    }
}

// ---- building blocks -------------------------------------------------------------------

fn t() -> RawTar {
    RawTar::new()
}

/// A plain image of uncompressed layers.
fn plain(f: impl Fn(&Ctx) -> Vec<Vec<u8>> + 'static) -> Build {
    Box::new(move |c, dir| {
        ImageParts::plain(f(c).into_iter().map(RawLayer::tar).collect()).write(dir)?;
        Ok(())
    })
}

/// A plain image of these layers, as they are.
fn plain_layers(f: impl Fn(&Ctx) -> Vec<RawLayer> + 'static) -> Build {
    Box::new(move |c, dir| {
        ImageParts::plain(f(c)).write(dir)?;
        Ok(())
    })
}

/// Any image from parts.
fn parts(f: impl Fn(&Ctx) -> Result<ImageParts> + 'static) -> Build {
    Box::new(move |c, dir| {
        f(c)?.write(dir)?;
        Ok(())
    })
}

/// A plain image of one layer holding `usr/ok`, with its manifest edited by `edit`.
fn edited(
    edit: impl Fn(&ostree_bridge_tests::oci::OciWriter, &mut Value) -> Result<()> + 'static,
) -> Build {
    Box::new(move |_, dir| {
        ImageParts::plain(vec![RawLayer::tar(t().file("usr/ok", b"ok").finish())])
            .write_edited(dir, &edit)?;
        Ok(())
    })
}

/// A plain image of one layer holding `usr/ok` whose index then names the manifest `f`
/// returns the descriptor of (given the real manifest's bytes).
fn reindexed(
    f: impl Fn(&ostree_bridge_tests::oci::OciWriter, &[u8]) -> Result<Value> + 'static,
) -> Build {
    Box::new(move |_, dir| {
        let d = ImageParts::plain(vec![RawLayer::tar(t().file("usr/ok", b"ok").finish())])
            .write(dir)?;
        let w = ostree_bridge_tests::oci::OciWriter::new(dir)?;
        let m = std::fs::read(
            dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )?;
        let mut desc = f(&w, &m)?;
        desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
        w.index(&[desc])?;
        Ok(())
    })
}

/// The sample ostree image with derived layers on top.
fn derived(f: impl Fn(&Ctx) -> Vec<Vec<u8>> + 'static) -> Build {
    Box::new(move |c, dir| {
        let mut p = c.base.clone();
        p.layers.extend(f(c).into_iter().map(RawLayer::tar));
        p.sync_diff_ids();
        p.write(dir)?;
        Ok(())
    })
}

/// The sample ostree image with layer `i`'s tar changed by `f` (digests and diff_id follow).
fn ostree_edit(i: usize, f: impl Fn(&[u8]) -> Result<Vec<u8>> + 'static) -> Build {
    Box::new(move |c, dir| {
        let mut p = c.base.clone();
        let old = p.layers[i].diff_id.clone();
        p.layers[i] = RawLayer::tar(f(&p.layers[i].blob)?);
        if p.config["config"]["Labels"]["ostree.final-diffid"] == old.as_str() {
            let new = p.layers[i].diff_id.clone();
            p.set_label("ostree.final-diffid", &new);
        }
        p.sync_diff_ids();
        p.write(dir)?;
        Ok(())
    })
}

fn gz_member(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip to memory");
    e.finish().expect("gzip to memory")
}

/// A header whose fields are then edited byte by byte (checksum recomputed unless `bad_sum`).
fn raw_header(h: Hdr, edit: impl FnOnce(&mut [u8; 512]), bad_sum: bool) -> [u8; 512] {
    let mut b = h.encode();
    edit(&mut b);
    set_cksum(&mut b);
    if bad_sum {
        b[149] ^= 1;
    }
    b
}

fn hdr(kind: u8, name: &str, f: impl FnOnce(&mut Hdr)) -> Hdr {
    let mut h = Hdr::new(kind, name);
    f(&mut h);
    h
}

// ---- expectations ------------------------------------------------------------------------

fn refused(
    class: &'static str,
    name: &'static str,
    build: Build,
    layer: Option<usize>,
    rule: &'static str,
) -> Case {
    Case {
        class,
        name,
        via: Via::Pull,
        env: Vec::new(),
        build,
        expect: Expect::Refused { layer, rule },
    }
}

fn imported(
    class: &'static str,
    name: &'static str,
    build: Build,
    check: impl Fn(&Tree) -> Result<()> + 'static,
) -> Case {
    Case {
        class,
        name,
        via: Via::Pull,
        env: Vec::new(),
        build,
        expect: Expect::Imported(Box::new(check)),
    }
}

impl Case {
    fn unencapsulate(mut self) -> Self {
        self.via = Via::Unencapsulate;
        self
    }
    fn env(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.env.push((k, v.into()));
        self
    }
}

// ---- the runner ------------------------------------------------------------------------

/// Every file under `root` (but `skip`): path ─▶ (size, mtime, first bytes hash).
fn snapshot(root: &Path, skip: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p == skip {
                continue;
            }
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let desc = if m.is_dir() {
                todo.push(p.clone());
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("link {:?}", std::fs::read_link(&p).ok())
            } else {
                use std::os::unix::fs::MetadataExt;
                format!("file {} {}.{}", m.len(), m.mtime(), m.mtime_nsec())
            };
            out.insert(p, desc);
        }
    }
    out
}

/// Run with a deadline; (status, stdout, stderr, elapsed).
fn run_bounded(mut cmd: Command) -> Result<(std::process::ExitStatus, String, String, Duration)> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut so = child.stdout.take().context("stdout")?;
    let mut se = child.stderr.take().context("stderr")?;
    let to = std::thread::spawn(move || {
        let mut s = Vec::new();
        so.read_to_end(&mut s).ok();
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = Vec::new();
        se.read_to_end(&mut s).ok();
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > CASE_TIMEOUT {
            child.kill().ok();
            child.wait().ok();
            bail!("still running after {CASE_TIMEOUT:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = String::from_utf8_lossy(&to.join().unwrap_or_default()).to_string();
    let err = String::from_utf8_lossy(&te.join().unwrap_or_default()).to_string();
    Ok((status, out, err, start.elapsed()))
}

fn refs(repo: &Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = run_stdout(
        Command::new("ostree")
            .arg("refs")
            .arg(format!("--repo={}", repo.display())),
    )?
    .lines()
    .map(str::to_string)
    .collect();
    v.sort();
    Ok(v)
}

fn run_case(env: &TestEnv, ctx: &Ctx, i: usize, case: &Case) -> Result<Duration> {
    let img = env.path().join("images").join(format!("{i:03}"));
    (case.build)(ctx, &img).context("building the image")?;
    let repo = env.path().join("repo");
    if repo.exists() {
        std::fs::remove_dir_all(&repo)?;
    }
    run(Command::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", repo.display()))
        .arg("--mode=bare"))?;
    let victim = Path::new(&ctx.victim);
    let before = snapshot(env.path(), &repo);
    let victim_before = snapshot(victim, &repo);
    let refs_before = refs(&repo)?;
    let imgref = format!("oci:{}", img.display());
    let mut cmd = env.ostree_container();
    match case.via {
        Via::Pull => cmd
            .args(["image", "pull", "--json"])
            .arg(&repo)
            .arg(&imgref),
        Via::Unencapsulate => cmd
            .args(["unencapsulate", "--repo"])
            .arg(&repo)
            .args(["--write-ref", "imported"])
            .arg(&imgref),
    };
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    let (status, out, err, took) = run_bounded(cmd)?;
    ensure!(!err.contains("panicked"), "panicked: {err}");
    ensure!(
        status.code().is_some(),
        "killed by a signal ({status}): {err}"
    );
    ensure!(
        snapshot(victim, &repo) == victim_before,
        "the victim directory changed"
    );
    let after = snapshot(env.path(), &repo);
    if after != before {
        let changed: Vec<_> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(v))
            .map(|(k, _)| k.display().to_string())
            .chain(
                before
                    .keys()
                    .filter(|k| !after.contains_key(*k))
                    .map(|k| format!("removed {}", k.display())),
            )
            .collect();
        bail!("written outside the repo: {changed:?}");
    }
    run(Command::new("ostree")
        .arg("fsck")
        .arg(format!("--repo={}", repo.display())))
    .context("fsck")?;
    let refs_after = refs(&repo)?;
    match &case.expect {
        Expect::Refused { layer, rule } => {
            ensure!(!status.success(), "accepted; stdout: {out}");
            ensure!(status.code() == Some(1), "exit {status}: {err}");
            ensure!(err.contains(rule), "want {rule:?} in: {err}");
            if let Some(n) = layer {
                let want = format!("layer {n} (sha256:");
                ensure!(err.contains(&want), "want {want:?} in: {err}");
            }
            ensure!(refs_after == refs_before, "refs written: {refs_after:?}");
            // Nothing staged is left for the next transaction to commit.
            let staged: Vec<String> = std::fs::read_dir(repo.join("tmp"))?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("staging-"))
                .collect();
            ensure!(staged.is_empty(), "staging left behind: {staged:?}");
            let objects = std::fs::read_dir(repo.join("objects"))?
                .flatten()
                .filter_map(|d| std::fs::read_dir(d.path()).ok())
                .map(|d| d.count())
                .sum::<usize>();
            ensure!(
                objects == 0,
                "{objects} objects in objects/ after a refusal"
            );
        }
        Expect::Imported(check) => {
            ensure!(status.success(), "refused: {err}");
            let commit = match case.via {
                Via::Pull => {
                    let r: Value = serde_json::from_str(&out).context("--json output")?;
                    ensure!(
                        refs_after
                            .iter()
                            .any(|r| r.starts_with("ostree/container/image/")),
                        "no image ref: {refs_after:?}"
                    );
                    r["merged_commit"]
                        .as_str()
                        .context("merged_commit")?
                        .to_string()
                }
                Via::Unencapsulate => {
                    let c = out
                        .trim()
                        .rsplit(' ')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    ensure!(
                        c == ctx.base_commit,
                        "imported {c}, want {}",
                        ctx.base_commit
                    );
                    c
                }
            };
            check(&Tree {
                repo: &repo,
                commit,
            })?;
        }
    }
    std::fs::remove_dir_all(&img).ok();
    Ok(took)
}

#[test]
fn hostile_images_are_refused_or_imported_safely() {
    let env = TestEnv::new();
    let victim = env.path().join("victim");
    std::fs::create_dir_all(victim.join("sub")).unwrap();
    std::fs::write(victim.join("keep"), "untouched").unwrap();
    std::fs::write(victim.join("sub/passwd"), "root:x:0:0").unwrap();
    // The sample OS as an uncompressed ostree image, the base of the derived and ostree cases.
    let (src, base_commit) = env.repo_with("src", "sample", SAMPLE).unwrap();
    let base_dir = env.path().join("base");
    env.encapsulate(
        &src,
        "sample",
        &format!("oci:{}", base_dir.display()),
        &["--compression", "none"],
    )
    .unwrap();
    let base = ImageParts::read(&base_dir).unwrap();
    assert!(base.layers.len() >= 3, "the sample image has chunk layers");
    let ctx = Ctx {
        victim: victim.display().to_string(),
        base,
        base_commit,
    };
    let table: Vec<Case> = [
        paths(),
        links(),
        whiteouts(),
        metadata(),
        tar_format(),
        compression(),
        oci_metadata(),
        ostree_content(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let only = std::env::var("HOSTILE_CASE").ok();
    let mut failures = Vec::new();
    let mut per_class: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut ran = 0;
    for (i, case) in table.iter().enumerate() {
        if only.as_deref().is_some_and(|o| !case.name.contains(o)) {
            continue;
        }
        ran += 1;
        let r = run_case(&env, &ctx, i, case);
        let e = per_class.entry(case.class).or_default();
        e.0 += 1;
        match r {
            Ok(took) => {
                e.1 += 1;
                eprintln!(
                    "ok   {:>6.2}s  {}: {}",
                    took.as_secs_f64(),
                    case.class,
                    case.name
                );
            }
            Err(err) => {
                let mut err = format!("{err:#}");
                if err.len() > 1500 {
                    let cut = (0..=1500)
                        .rev()
                        .find(|&i| err.is_char_boundary(i))
                        .unwrap_or(0);
                    err.truncate(cut);
                    err.push('…');
                }
                eprintln!("FAIL          {}: {}: {err}", case.class, case.name);
                failures.push(format!("{}: {}: {err}", case.class, case.name));
            }
        }
    }
    let summary: Vec<String> = per_class
        .iter()
        .map(|(c, (n, ok))| format!("{c} {ok}/{n}"))
        .collect();
    eprintln!(
        "hostile_import: {ran} cases run, {} passed ({})",
        ran - failures.len(),
        summary.join(", ")
    );
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    if only.is_none() {
        assert!(
            ran >= 60,
            "issue 6 asks for at least 60 cases, the table has {ran}"
        );
    }
}
