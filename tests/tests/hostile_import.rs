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

// ---- the table -------------------------------------------------------------------------

fn paths() -> Vec<Case> {
    let c = "paths";
    let long_component = "n".repeat(255);
    let long_path = format!("usr/{}/f", vec![long_component.as_str(); 15].join("/"));
    let long_path2 = long_path.clone();
    let deep = format!("usr/{}f", "d/".repeat(200));
    let deep2 = deep.clone();
    vec![
        imported(
            c,
            "dot components are skipped",
            plain(|_| {
                vec![t()
                    .dir("./")
                    .dir("./usr/.")
                    .file("./usr/./a/./b", b"b")
                    .file("usr//c", b"c")
                    .finish()]
            }),
            |tr| {
                tr.expect_cat("/usr/a/b", "b")?;
                tr.expect_cat("/usr/c", "c")
            },
        ),
        imported(
            c,
            "an empty name or `/` is the root directory",
            plain(|_| vec![t().dir("").dir("/").dir(".").file("usr/x", b"x").finish()]),
            |tr| tr.expect_cat("/usr/x", "x"),
        ),
        refused(
            c,
            "a regular file with an empty name",
            plain(|_| vec![t().file("", b"data").finish()]),
            Some(0),
            "an entry with an empty path (the root) that is not a directory",
        ),
        refused(
            c,
            "a whiteout name as a directory (`usr/.wh.d/y`)",
            plain(|_| vec![t().file("usr/.wh.d/y", b"y").finish()]),
            Some(0),
            "a whiteout name used as a directory",
        ),
        refused(
            c,
            "`.wh..` as a directory (`usr/.wh../x`)",
            plain(|_| vec![t().file("usr/.wh../x", b"x").finish()]),
            Some(0),
            "a whiteout name used as a directory",
        ),
        refused(
            c,
            "a path over 4096 bytes (GNU long name)",
            plain(|_| {
                let p = format!("usr/{}", "a/".repeat(2100));
                vec![t().gnu_long_name(p.as_bytes()).file("x", b"x").finish()]
            }),
            Some(0),
            "the path is longer than 4096 bytes",
        ),
        refused(
            c,
            "a path over 4096 bytes (PAX path)",
            plain(|_| {
                let p = format!("usr/{}", "b".repeat(5000));
                vec![t().pax(&[("path", p.as_bytes())]).file("x", b"x").finish()]
            }),
            Some(0),
            "the path is longer than 4096 bytes",
        ),
        imported(
            c,
            "a 3900-byte path of 255-byte names",
            plain(move |_| {
                vec![t()
                    .gnu_long_name(long_path.as_bytes())
                    .file("x", b"long")
                    .finish()]
            }),
            move |tr| tr.expect_cat(&format!("/{long_path2}"), "long"),
        ),
        imported(
            c,
            "200 levels of directories",
            plain(move |_| {
                vec![t()
                    .gnu_long_name(deep.as_bytes())
                    .file("x", b"deep")
                    .finish()]
            }),
            move |tr| tr.expect_cat(&format!("/{deep2}"), "deep"),
        ),
        imported(
            c,
            "the same file twice: the later wins",
            plain(|_| {
                vec![t()
                    .file("usr/f", b"first")
                    .file("usr/f", b"second")
                    .finish()]
            }),
            |tr| tr.expect_cat("/usr/f", "second"),
        ),
        imported(
            c,
            "a file, then a directory of that name: the directory wins",
            plain(|_| {
                vec![t()
                    .file("usr/x", b"file")
                    .dir("usr/x")
                    .file("usr/x/in", b"in")
                    .finish()]
            }),
            |tr| {
                tr.expect_stat("/usr/x", "d")?;
                tr.expect_cat("/usr/x/in", "in")
            },
        ),
        imported(
            c,
            "a directory with children, then a file of that name: the file wins",
            plain(|_| {
                vec![t()
                    .dir("usr/x")
                    .file("usr/x/in", b"in")
                    .file("usr/x", b"file")
                    .finish()]
            }),
            |tr| {
                tr.expect_cat("/usr/x", "file")?;
                tr.expect_absent("/usr/x/in")
            },
        ),
        imported(
            c,
            "a file replaced by a directory in a later layer",
            plain(|_| {
                vec![
                    t().file("usr/x", b"file").finish(),
                    t().file("usr/x/in", b"in").finish(),
                ]
            }),
            |tr| tr.expect_cat("/usr/x/in", "in"),
        ),
    ]
}

fn links() -> Vec<Case> {
    let c = "links";
    vec![
        imported(
            c,
            "a symlinked directory, then a file through it in a later layer",
            plain(|c| {
                vec![
                    t().dir("usr").symlink("usr/evil", &c.victim).finish(),
                    t().file("usr/evil/keep", b"pwned").finish(),
                ]
            }),
            // The later path replaces the symlink with a directory of the image.
            |tr| {
                tr.expect_stat("/usr/evil", "d")?;
                tr.expect_cat("/usr/evil/keep", "pwned")
            },
        ),
        imported(
            c,
            "a chain of relative symlinks, then a file through it, same layer",
            plain(|_| {
                vec![t()
                    .symlink("usr/a", "b")
                    .symlink("usr/b", "../../../../../..")
                    .symlink("usr/c", "/usr/a")
                    .file("usr/c/x", b"through")
                    .finish()]
            }),
            |tr| {
                tr.expect_stat("/usr/a", "l")?;
                tr.expect_stat("/usr/b", "l")?;
                tr.expect_cat("/usr/c/x", "through")
            },
        ),
        imported(
            c,
            "symlinks pointing outside are stored, never followed",
            plain(|c| {
                vec![t()
                    .symlink("usr/abs", &c.victim)
                    .symlink("usr/rel", "../../../../../../../../tmp")
                    .symlink("usr/etc-shadow", "/etc/shadow")
                    .finish()]
            }),
            |tr| {
                let s = tr.stat("/usr/rel")?;
                ensure!(s.ends_with("-> ../../../../../../../../tmp"), "{s}");
                tr.expect_stat("/usr/etc-shadow", "l")
            },
        ),
        imported(
            c,
            "a whiteout through a symlinked directory removes nothing",
            plain(|c| {
                vec![
                    t().symlink("usr/lnk", &c.victim)
                        .file("usr/keep", b"k")
                        .finish(),
                    t().file("usr/lnk/.wh.keep", b"").finish(),
                ]
            }),
            |tr| {
                tr.expect_stat("/usr/lnk", "l")?;
                tr.expect_cat("/usr/keep", "k")
            },
        ),
        imported(
            c,
            "an opaque marker through a symlinked directory",
            plain(|c| {
                vec![
                    t().symlink("usr/lnk", &c.victim).finish(),
                    t().file("usr/lnk/.wh..wh..opq", b"").finish(),
                ]
            }),
            |tr| tr.expect_stat("/usr/lnk", "l"),
        ),
        refused(
            c,
            "a hardlink through a symlinked directory",
            plain(|c| {
                vec![
                    t().symlink("usr/lnk", &c.victim).finish(),
                    t().hardlink("usr/h", "usr/lnk/keep").finish(),
                ]
            }),
            Some(1),
            "is not a file in this layer or below",
        ),
        refused(
            c,
            "a hardlink cycle",
            plain(|_| {
                vec![t()
                    .hardlink("usr/a", "usr/b")
                    .hardlink("usr/b", "usr/a")
                    .finish()]
            }),
            Some(0),
            "is not a file in this layer or below",
        ),
        refused(
            c,
            "a hardlink to itself",
            plain(|_| vec![t().hardlink("usr/a", "usr/a").finish()]),
            Some(0),
            "is not a file in this layer or below",
        ),
        refused(
            c,
            "a hardlink to `usr/../../x`",
            plain(|_| {
                vec![t()
                    .file("usr/x", b"x")
                    .hardlink("usr/h", "usr/../../x")
                    .finish()]
            }),
            Some(0),
            "`..` component",
        ),
        refused(
            c,
            "a hardlink to an absolute host path",
            plain(|c| {
                vec![t()
                    .hardlink("usr/h", &format!("{}/keep", c.victim))
                    .finish()]
            }),
            Some(0),
            "is not a file in this layer or below",
        ),
        imported(
            c,
            "a hardlink to a target later in the stream",
            plain(|_| {
                vec![t()
                    .hardlink("usr/h", "usr/t")
                    .file("usr/t", b"target")
                    .finish()]
            }),
            |tr| tr.expect_cat("/usr/h", "target"),
        ),
        imported(
            c,
            "a hardlink chain",
            plain(|_| {
                vec![t()
                    .file("usr/a", b"chain")
                    .hardlink("usr/b", "usr/a")
                    .hardlink("usr/c", "usr/b")
                    .finish()]
            }),
            |tr| tr.expect_cat("/usr/c", "chain"),
        ),
        refused(
            c,
            "a hardlink to a directory of a lower layer",
            plain(|_| {
                vec![
                    t().dir("usr/d").finish(),
                    t().hardlink("usr/h", "usr/d").finish(),
                ]
            }),
            Some(1),
            "is not a file in this layer or below",
        ),
        refused(
            c,
            "a hardlink to a symlink's target path outside",
            plain(|_| {
                vec![t()
                    .symlink("usr/s", "/etc")
                    .hardlink("usr/h", "usr/s/passwd")
                    .finish()]
            }),
            Some(0),
            "is not a file in this layer or below",
        ),
    ]
}

fn whiteouts() -> Vec<Case> {
    let c = "whiteouts";
    vec![
        refused(
            c,
            "`.wh...`",
            plain(|_| vec![t().file("usr/.wh...", b"").finish()]),
            Some(0),
            "malformed whiteout",
        ),
        refused(
            c,
            "`.wh.` at the root",
            plain(|_| vec![t().file(".wh.", b"").finish()]),
            Some(0),
            "malformed whiteout",
        ),
        refused(
            c,
            "`.wh..` at the root (a whiteout of `/`)",
            plain(|_| vec![t().file("./.wh..", b"").finish()]),
            Some(0),
            "malformed whiteout",
        ),
        refused(
            c,
            "`.wh..wh.x` (a whiteout of a whiteout)",
            plain(|_| vec![t().file("usr/.wh..wh.x", b"").finish()]),
            Some(0),
            "malformed whiteout",
        ),
        refused(
            c,
            "`.wh.` + `..` further down",
            plain(|_| vec![t().file("usr/.wh.x/../../y", b"").finish()]),
            Some(0),
            "`..` component",
        ),
        refused(
            c,
            "an opaque marker at the root",
            plain(|_| vec![t().file("./.wh..wh..opq", b"").finish()]),
            Some(0),
            "opaque marker at the root",
        ),
        imported(
            c,
            "an opaque marker inside a dropped directory is dropped",
            plain(|_| {
                vec![
                    t().file("usr/k", b"k").finish(),
                    t().file("opt/.wh..wh..opq", b"").finish(),
                ]
            }),
            |tr| tr.expect_cat("/usr/k", "k"),
        ),
        imported(
            c,
            "an opaque marker as a directory entry, in a dir no layer made",
            plain(|_| {
                vec![t()
                    .dir("usr/nowhere/.wh..wh..opq")
                    .file("usr/k", b"k")
                    .finish()]
            }),
            |tr| tr.expect_cat("/usr/k", "k"),
        ),
        imported(
            c,
            "an opaque marker on /etc hides the lower usr/etc only",
            derived(|_| {
                vec![t()
                    .file("etc/.wh..wh..opq", b"")
                    .file("etc/new", b"n")
                    .finish()]
            }),
            |tr| {
                tr.expect_cat("/usr/etc/new", "n")?;
                tr.expect_absent("/usr/etc/passwd")?;
                tr.expect_stat("/usr/bin/busybox", "-")
            },
        ),
        imported(
            c,
            "a whiteout of a whole top-level directory",
            derived(|_| vec![t().file(".wh.var", b"").finish()]),
            |tr| {
                tr.expect_absent("/var")?;
                tr.expect_stat("/usr/bin/busybox", "-")
            },
        ),
        imported(
            c,
            "whiteouts in the ostree object area are dropped",
            derived(|_| {
                vec![t()
                    .file("sysroot/ostree/repo/objects/.wh..wh..opq", b"")
                    .file("sysroot/ostree/repo/.wh.objects", b"")
                    .file("sysroot/.wh.ostree", b"")
                    .finish()]
            }),
            |tr| tr.expect_stat("/usr/bin/busybox", "-"),
        ),
        refused(
            c,
            "a whiteout climbing out of the object area",
            derived(|_| {
                vec![t()
                    .file("sysroot/ostree/repo/objects/../../../../usr/.wh.bin", b"")
                    .finish()]
            }),
            None,
            "`..` component",
        ),
    ]
}

fn metadata() -> Vec<Case> {
    let c = "special files and metadata";
    vec![
        imported(
            c,
            "setuid and setgid root files keep their mode",
            plain(|_| {
                vec![t()
                    .file_mode("usr/bin/su", 0o4755, b"su")
                    .file_mode("usr/bin/sg", 0o2755, b"sg")
                    .entry(hdr(b'5', "usr/sticky", |h| h.mode = 0o1777), &[])
                    .finish()]
            }),
            |tr| {
                tr.expect_stat("/usr/bin/su", "-04755 0 0")?;
                tr.expect_stat("/usr/bin/sg", "-02755 0 0")?;
                tr.expect_stat("/usr/sticky", "d01777")
            },
        ),
        imported(
            c,
            "odd modes: file-type bits in the mode field are masked, 0 and 07777 kept",
            plain(|_| {
                vec![t()
                    .file_mode("usr/typebits", 0o170644, b"t")
                    .file_mode("usr/none", 0, b"n")
                    .file_mode("usr/all", 0o7777, b"a")
                    .entry(hdr(b'5', "usr/d0", |h| h.mode = 0), &[])
                    .finish()]
            }),
            |tr| {
                tr.expect_stat("/usr/typebits", "-00644")?;
                tr.expect_stat("/usr/none", "-00000")?;
                tr.expect_stat("/usr/all", "-07777")?;
                tr.expect_stat("/usr/d0", "d00000")
            },
        ),
        refused(
            c,
            "an xattr over 64 KiB in a PAX record",
            plain(|_| {
                let big = vec![b'x'; 70 * 1024];
                vec![t()
                    .pax(&[("SCHILY.xattr.user.big", &big)])
                    .file("usr/f", b"f")
                    .finish()]
            }),
            Some(0),
            "larger than 64 KiB",
        ),
        refused(
            c,
            "a PAX record set over 1 MiB",
            plain(|_| {
                let big = vec![b'x'; 60 * 1024];
                let recs: Vec<(String, Vec<u8>)> = (0..20)
                    .map(|i| (format!("SCHILY.xattr.user.x{i}"), big.clone()))
                    .collect();
                let refs: Vec<(&str, &[u8])> = recs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_slice()))
                    .collect();
                vec![t().pax(&refs).file("usr/f", b"f").finish()]
            }),
            Some(0),
            "over the 1048576 byte limit",
        ),
        refused(
            c,
            "a malformed security.capability",
            plain(|_| {
                vec![t()
                    .pax(&[("SCHILY.xattr.security.capability", b"\x01\x02garbage")])
                    .file("usr/f", b"f")
                    .finish()]
            }),
            // The kernel refuses it as the object is written (the layer is not named yet).
            None,
            "fsetxattr(security.capability): Invalid argument",
        ),
        refused(
            c,
            "an xattr with an empty name",
            plain(|_| {
                vec![t()
                    .pax(&[("SCHILY.xattr.", b"v")])
                    .file("usr/f", b"f")
                    .finish()]
            }),
            Some(0),
            "empty or NUL-containing name",
        ),
        refused(
            c,
            "a uid beyond 32 bits (base-256 field)",
            plain(|_| {
                vec![t()
                    .entry(hdr(b'0', "usr/f", |h| h.uid = 1 << 33), b"f")
                    .finish()]
            }),
            Some(0),
            "uid beyond 32 bits",
        ),
        refused(
            c,
            "a gid beyond 32 bits (PAX record)",
            plain(|_| {
                vec![t()
                    .pax(&[("gid", b"1099511627776")])
                    .file("usr/f", b"f")
                    .finish()]
            }),
            Some(0),
            "gid beyond 32 bits",
        ),
        refused(
            c,
            "a uid of 2^32-1 (chown's -1) in a derived layer",
            plain(|_| {
                vec![t()
                    .entry(hdr(b'0', "usr/f", |h| h.uid = u32::MAX.into()), b"f")
                    .finish()]
            }),
            Some(0),
            "uid or gid 4294967295 cannot be stored",
        ),
        refused(
            c,
            "a gid of 2^32-1 (chown's -1) in a derived layer",
            plain(|_| {
                vec![t()
                    .pax(&[("gid", b"4294967295")])
                    .file("usr/f", b"f")
                    .finish()]
            }),
            Some(0),
            "uid or gid 4294967295 cannot be stored",
        ),
        imported(
            c,
            "a uid of 2^32-2 is kept",
            plain(|_| {
                vec![t()
                    .entry(hdr(b'0', "usr/f", |h| h.uid = (u32::MAX - 1).into()), b"f")
                    .finish()]
            }),
            |tr| tr.expect_stat("/usr/f", "-00644 4294967294 0"),
        ),
        imported(
            c,
            "device nodes and fifos are dropped",
            plain(|_| {
                vec![t()
                    .entry(hdr(b'3', "usr/null", |_| {}), &[])
                    .entry(hdr(b'4', "usr/sda", |_| {}), &[])
                    .entry(hdr(b'6', "usr/fifo", |_| {}), &[])
                    .file("usr/ok", b"ok")
                    .finish()]
            }),
            |tr| {
                tr.expect_absent("/usr/null")?;
                tr.expect_absent("/usr/sda")?;
                tr.expect_absent("/usr/fifo")?;
                tr.expect_cat("/usr/ok", "ok")
            },
        ),
        refused(
            c,
            "an unknown entry type",
            plain(|_| vec![t().entry(hdr(b'Z', "usr/z", |_| {}), &[]).finish()]),
            Some(0),
            "unsupported tar entry type",
        ),
    ]
}

fn tar_format() -> Vec<Case> {
    let c = "tar format";
    vec![
        refused(
            c,
            "a truncated header",
            plain(|_| {
                let mut v = t().file("usr/a", b"a").buf.clone();
                v.extend_from_slice(&Hdr::new(b'0', "usr/b").encode()[..300]);
                vec![v]
            }),
            Some(0),
            "layer 0",
        ),
        refused(
            c,
            "a bad header checksum",
            plain(|_| {
                let h = raw_header(Hdr::new(b'0', "usr/a"), |_| {}, true);
                vec![t().block(&h).finish()]
            }),
            Some(0),
            "checksum mismatch",
        ),
        refused(
            c,
            "a size field that is not a number",
            plain(|_| {
                let h = raw_header(
                    Hdr::new(b'0', "usr/a"),
                    |b| b[124..136].copy_from_slice(b"zzzzzzzzzzz\0"),
                    false,
                );
                vec![t().block(&h).finish()]
            }),
            Some(0),
            "layer 0",
        ),
        refused(
            c,
            "a size field bigger than the data",
            plain(|_| {
                let h = hdr(b'0', "usr/a", |h| h.size = 100_000);
                let mut v = t().block(&h.encode()).buf.clone();
                v.extend_from_slice(&[b'a'; 512]);
                vec![v]
            }),
            Some(0),
            "header says 100000",
        ),
        refused(
            c,
            "a base-256 size of 2^62",
            plain(|_| {
                vec![t()
                    .block(&hdr(b'0', "usr/a", |h| h.size = 1 << 62).encode())
                    .data(b"a")
                    .finish()]
            }),
            Some(0),
            "layer 0",
        ),
        imported(
            c,
            "trailing garbage after the end-of-archive blocks is ignored",
            plain(|_| {
                let mut v = t().file("usr/a", b"a").finish();
                v.extend_from_slice(&[0xff; 3000]);
                vec![v]
            }),
            |tr| tr.expect_cat("/usr/a", "a"),
        ),
        imported(
            c,
            "no end-of-archive blocks at all",
            plain(|_| vec![t().file("usr/a", b"a").buf.clone()]),
            |tr| tr.expect_cat("/usr/a", "a"),
        ),
        imported(
            c,
            "a GNU long name and a PAX path that agree",
            plain(|_| {
                vec![t()
                    .gnu_long_name(b"usr/same")
                    .pax(&[("path", b"usr/same")])
                    .file("x", b"s")
                    .finish()]
            }),
            |tr| tr.expect_cat("/usr/same", "s"),
        ),
        refused(
            c,
            "a GNU long name and a PAX path that disagree",
            plain(|_| {
                vec![t()
                    .gnu_long_name(b"usr/gnu")
                    .pax(&[("path", b"usr/pax")])
                    .file("x", b"?")
                    .finish()]
            }),
            Some(0),
            "disagree",
        ),
        refused(
            c,
            "a GNU sparse file",
            plain(|_| {
                let h = raw_header(
                    hdr(b'S', "usr/sparse", |h| h.size = 512),
                    |b| {
                        // One sparse extent: offset 3584, 512 bytes; real size 4096.
                        b[386..398].copy_from_slice(b"00000007000\0");
                        b[398..410].copy_from_slice(b"00000001000\0");
                        b[483..495].copy_from_slice(b"00000010000\0");
                    },
                    false,
                );
                vec![t().block(&h).data(&[b's'; 512]).finish()]
            }),
            Some(0),
            "unsupported tar entry type",
        ),
        refused(
            c,
            "a GNU sparse file with extension headers",
            plain(|_| {
                let h = raw_header(
                    hdr(b'S', "usr/sparse", |h| h.size = 512),
                    |b| b[482] = 1,
                    false,
                );
                vec![t().block(&h).data(&[0; 512]).data(&[b's'; 512]).finish()]
            }),
            Some(0),
            "GNU sparse files with extension headers",
        ),
        refused(
            c,
            "a 2 MiB GNU long name smuggled past a size field with leading spaces",
            plain(|_| smuggled_long_name(SmuggleBy::LeadingSpaces)),
            Some(0),
            "over the 1048576 byte limit",
        ),
        refused(
            c,
            "a 2 MiB GNU long name smuggled past a PAX size record",
            plain(|_| smuggled_long_name(SmuggleBy::PaxSize)),
            Some(0),
            "over the 1048576 byte limit",
        ),
    ]
}

enum SmuggleBy {
    LeadingSpaces,
    PaxSize,
}

/// A file whose data (one block, as the tar parser counts it) is a fake header claiming to
/// cover the next 2 MiB, followed by a real 2 MiB GNU long name: a reader that counts the
/// file's size differently from the parser skips the long name's header.
fn smuggled_long_name(by: SmuggleBy) -> Vec<Vec<u8>> {
    let name_len = 2 << 20;
    let fake = hdr(b'0', "fake", |h| h.size = 512 + name_len as u64).encode();
    let mut tr = t();
    match by {
        SmuggleBy::LeadingSpaces => {
            let h = raw_header(
                Hdr::new(b'0', "usr/a"),
                |b| b[124..136].copy_from_slice(b"       1000\0"),
                false,
            );
            tr.block(&h);
        }
        SmuggleBy::PaxSize => {
            // On a directory: the importer reads no data, the tar crate skips 512 bytes.
            tr.pax(&[("size", b"512")]);
            tr.block(&hdr(b'5', "usr/d", |h| h.size = 0).encode());
        }
    }
    tr.data(&fake);
    tr.entry(Hdr::new(b'L', "././@LongLink"), &vec![b'n'; name_len]);
    tr.file("x", b"x");
    vec![tr.finish()]
}

fn compression() -> Vec<Case> {
    let c = "compression";
    vec![
        imported(
            c,
            "multi-member gzip: a file in member 2 appears",
            plain_layers(|_| {
                let tar = t().file("usr/one", b"1").file("usr/two", b"2").finish();
                let mut blob = gz_member(&tar[..512 * 2]);
                blob.extend(gz_member(&tar[512 * 2..]));
                vec![RawLayer::raw(blob, MT_GZIP, &sha256_digest(&tar))]
            }),
            |tr| {
                tr.expect_cat("/usr/one", "1")?;
                tr.expect_cat("/usr/two", "2")
            },
        ),
        imported(
            c,
            "zstd with a skippable frame first",
            plain_layers(|_| {
                let tar = t().file("usr/z", b"z").finish();
                let mut blob = vec![0x50, 0x2a, 0x4d, 0x18, 8, 0, 0, 0];
                blob.extend_from_slice(b"skipme!!");
                blob.extend(zstd::encode_all(tar.as_slice(), 3).expect("zstd"));
                vec![RawLayer::raw(blob, MT_ZSTD, &sha256_digest(&tar))]
            }),
            |tr| tr.expect_cat("/usr/z", "z"),
        ),
        imported(
            c,
            "zstd as several frames",
            plain_layers(|_| {
                let tar = t().file("usr/z1", b"1").file("usr/z2", b"2").finish();
                let mut blob = zstd::encode_all(&tar[..1024], 3).expect("zstd");
                blob.extend(zstd::encode_all(&tar[1024..], 3).expect("zstd"));
                vec![RawLayer::raw(blob, MT_ZSTD, &sha256_digest(&tar))]
            }),
            |tr| tr.expect_cat("/usr/z2", "2"),
        ),
        refused(
            c,
            "a gzip bomb past the layer limit",
            plain_layers(|_| {
                let zeros = vec![0u8; 8 << 20];
                let tar = t().file("usr/bomb", &zeros).finish();
                vec![RawLayer::gzip(&tar)]
            }),
            Some(0),
            "exceeds its limit of 1048576 bytes",
        )
        .env("OSTREE_CONTAINER_MAX_LAYER_BYTES", (1u64 << 20).to_string()),
        refused(
            c,
            "a zstd bomb past the layer limit",
            plain_layers(|_| {
                let zeros = vec![0u8; 8 << 20];
                vec![RawLayer::zstd(&t().file("usr/bomb", &zeros).finish())]
            }),
            Some(0),
            "exceeds its limit of 1048576 bytes",
        )
        .env("OSTREE_CONTAINER_MAX_LAYER_BYTES", (1u64 << 20).to_string()),
        refused(
            c,
            "a gzip media type on plain tar bytes",
            plain_layers(|_| {
                let tar = t().file("usr/a", b"a").finish();
                let d = sha256_digest(&tar);
                vec![RawLayer::raw(tar, MT_GZIP, &d)]
            }),
            Some(0),
            "layer 0",
        ),
        refused(
            c,
            "a zstd media type on gzip bytes",
            plain_layers(|_| {
                let tar = t().file("usr/a", b"a").finish();
                let d = sha256_digest(&tar);
                vec![RawLayer::raw(gz_member(&tar), MT_ZSTD, &d)]
            }),
            Some(0),
            "layer 0",
        ),
        refused(
            c,
            "a plain tar media type on gzip bytes",
            plain_layers(|_| {
                let tar = t().file("usr/a", b"a").finish();
                let d = sha256_digest(&tar);
                vec![RawLayer::raw(gz_member(&tar), MT_TAR, &d)]
            }),
            Some(0),
            "layer 0",
        ),
        refused(
            c,
            "a truncated gzip stream",
            plain_layers(|_| {
                let tar = t().file("usr/a", &[7; 5000]).finish();
                let d = sha256_digest(&tar);
                let gz = gz_member(&tar);
                vec![RawLayer::raw(gz[..gz.len() - 20].to_vec(), MT_GZIP, &d)]
            }),
            Some(0),
            "layer 0",
        ),
        refused(
            c,
            "garbage after the last gzip member",
            plain_layers(|_| {
                let tar = t().file("usr/a", b"a").finish();
                let d = sha256_digest(&tar);
                let mut gz = gz_member(&tar);
                gz.extend_from_slice(b"this is not a gzip member");
                vec![RawLayer::raw(gz, MT_GZIP, &d)]
            }),
            Some(0),
            "layer 0",
        ),
    ]
}

fn oci_metadata() -> Vec<Case> {
    let c = "OCI metadata";
    vec![
        refused(
            c,
            "a manifest whose digest does not match",
            reindexed(|w, m| {
                // The manifest's bytes under the digest of other bytes.
                let wrong = sha256_digest(b"another manifest");
                w.put_as(&wrong, m)?;
                Ok(serde_json::json!({"digest": wrong, "size": m.len()}))
            }),
            None,
            "has digest",
        ),
        refused(
            c,
            "a manifest descriptor whose size does not match",
            reindexed(|_, m| {
                let d = sha256_digest(m);
                Ok(serde_json::json!({"digest": d, "size": m.len() + 7}))
            }),
            None,
            "its descriptor says",
        ),
        refused(
            c,
            "a config descriptor whose size does not match",
            edited(|_, m| {
                let n = m["config"]["size"].as_u64().context("size")?;
                m["config"]["size"] = (n - 1).into();
                Ok(())
            }),
            None,
            "its descriptor says",
        ),
        refused(
            c,
            "a config whose digest does not match",
            edited(|w, m| {
                let wrong = sha256_digest(b"another config");
                let cfg = std::fs::read(
                    w.dir.join("blobs/sha256").join(
                        m["config"]["digest"]
                            .as_str()
                            .context("cd")?
                            .trim_start_matches("sha256:"),
                    ),
                )?;
                w.put_as(&wrong, &cfg)?;
                m["config"]["digest"] = wrong.into();
                Ok(())
            }),
            None,
            "has digest",
        ),
        refused(
            c,
            "a layer whose digest does not match",
            edited(|w, m| {
                let wrong = sha256_digest(b"another layer");
                w.put_as(&wrong, &t().file("usr/evil", b"e").finish())?;
                m["layers"][0]["digest"] = wrong.into();
                Ok(())
            }),
            Some(0),
            "has digest",
        ),
        refused(
            c,
            "a layer whose size is larger than the blob",
            edited(|_, m| {
                let s = m["layers"][0]["size"].as_u64().context("size")?;
                m["layers"][0]["size"] = (s + 512).into();
                Ok(())
            }),
            Some(0),
            "the manifest says",
        ),
        refused(
            c,
            "a layer whose size is smaller than the blob",
            edited(|_, m| {
                m["layers"][0]["size"] = 512.into();
                Ok(())
            }),
            Some(0),
            "limit of 512 bytes",
        ),
        refused(
            c,
            "a diff_id that does not match",
            parts(|_| {
                let mut p =
                    ImageParts::plain(vec![RawLayer::tar(t().file("usr/a", b"a").finish())]);
                p.config["rootfs"]["diff_ids"][0] = sha256_digest(b"other").into();
                Ok(p)
            }),
            Some(0),
            "the config's diff_id is",
        ),
        refused(
            c,
            "more layers than diff_ids",
            parts(|_| {
                let mut p = ImageParts::plain(vec![
                    RawLayer::tar(t().file("usr/a", b"a").finish()),
                    RawLayer::tar(t().file("usr/b", b"b").finish()),
                ]);
                p.config["rootfs"]["diff_ids"]
                    .as_array_mut()
                    .context("ids")?
                    .pop();
                Ok(p)
            }),
            None,
            "the manifest lists 2 layers but the config 1 diff_ids",
        ),
        refused(
            c,
            "fewer layers than diff_ids",
            parts(|_| {
                let mut p =
                    ImageParts::plain(vec![RawLayer::tar(t().file("usr/a", b"a").finish())]);
                p.config["rootfs"]["diff_ids"]
                    .as_array_mut()
                    .context("ids")?
                    .push(sha256_digest(b"x").into());
                Ok(p)
            }),
            None,
            "the manifest lists 1 layers but the config 2 diff_ids",
        ),
        refused(
            c,
            "an unknown layer media type",
            plain_layers(|_| {
                let tar = t().file("usr/a", b"a").finish();
                let d = sha256_digest(&tar);
                vec![RawLayer::raw(
                    tar,
                    "application/vnd.example.layer.v1.tar+lz4",
                    &d,
                )]
            }),
            Some(0),
            "unsupported layer media type",
        ),
        refused(
            c,
            "an image index where the manifest should be",
            edited(|w, m| {
                let inner = w.put(&serde_json::to_vec(m)?)?;
                *m = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [inner]});
                Ok(())
            }),
            None,
            "the manifest names no config",
        ),
        refused(
            c,
            "a config that is not JSON",
            edited(|w, m| {
                m["config"] = w.put(b"\x00\x01 not json {")?;
                Ok(())
            }),
            None,
            "parsing the config",
        ),
        refused(
            c,
            "a manifest that is not JSON",
            reindexed(|w, _| w.put(b"{\"schemaVersion\": 2, \"config\": ")),
            None,
            "parsing the manifest",
        ),
        refused(
            c,
            "a manifest over 4 MiB",
            edited(|_, m| {
                m["annotations"] = serde_json::json!({"padding": "p".repeat(5 << 20)});
                Ok(())
            }),
            None,
            "over the 4194304 byte limit",
        ),
        refused(
            c,
            "a config over 4 MiB",
            edited(|w, m| {
                let cfg =
                    serde_json::json!({"padding": "p".repeat(5 << 20), "rootfs": {"diff_ids": []}});
                m["config"] = w.put(&serde_json::to_vec(&cfg)?)?;
                Ok(())
            }),
            None,
            "over the 4194304 byte limit",
        ),
        refused(
            c,
            "a layer digest that climbs out of blobs/",
            edited(|_, m| {
                m["layers"][0]["digest"] = "sha256:../../../victim/keep".into();
                Ok(())
            }),
            Some(0),
            "invalid digest",
        ),
        refused(
            c,
            "a layer digest of another algorithm",
            edited(|_, m| {
                m["layers"][0]["digest"] = format!("sha512:{}", "0".repeat(128)).into();
                Ok(())
            }),
            None,
            "invalid digest \"sha512:",
        ),
        refused(
            c,
            "a layer without a size",
            edited(|_, m| {
                m["layers"][0]
                    .as_object_mut()
                    .context("desc")?
                    .remove("size");
                Ok(())
            }),
            Some(0),
            "has no size",
        ),
        imported(
            c,
            "the same layer twice in one image",
            plain(|_| {
                let l = t().file("usr/twice", b"2").finish();
                vec![l.clone(), l]
            }),
            |tr| tr.expect_cat("/usr/twice", "2"),
        ),
        imported(
            c,
            "3000 layers finish in bounded time",
            plain(|_| {
                (0..3000u64)
                    .map(|i| t().entry(hdr(b'5', "usr", |h| h.mtime = i), &[]).finish())
                    .collect()
            }),
            |tr| tr.expect_stat("/usr", "d"),
        ),
    ]
}

/// The first regular content object (`.file`) of at least `min` bytes in an ostree layer.
fn content_object(tar: &[u8], min: usize) -> Result<rawtar::Located> {
    let (es, _) = rawtar::locate(tar)?;
    es.into_iter()
        .find(|e| e.kind == b'0' && e.path.ends_with(".file") && e.size >= min)
        .context("no content object in the layer")
}

fn ostree_content() -> Vec<Case> {
    let c = "ostree content";
    let tamper = |tar: &[u8]| -> Result<Vec<u8>> {
        let e = content_object(tar, 1)?;
        let mut v = tar.to_vec();
        v[e.data_pos] ^= 0x20;
        Ok(v)
    };
    let dirmeta_into_chunk = |c: &Ctx, tar: &[u8]| -> Result<Vec<u8>> {
        let l0 = &c.base.layers[0].blob;
        let (es, _) = rawtar::locate(l0)?;
        let m = es
            .iter()
            .find(|e| e.path.ends_with(".dirmeta"))
            .context("no dirmeta")?;
        let mut extra = t();
        extra.entry(
            Hdr::new(b'0', &m.path),
            &l0[m.data_pos..m.data_pos + m.size],
        );
        Ok(rawtar::append(tar, &extra.buf)?)
    };
    vec![
        refused(
            c,
            "a tampered object in a chunk layer",
            ostree_edit(1, tamper),
            Some(1),
            "content does not match its name",
        )
        .unencapsulate(),
        refused(
            c,
            "a tampered object in a chunk layer (image pull)",
            ostree_edit(1, tamper),
            Some(1),
            "content does not match its name",
        ),
        refused(
            c,
            "a commit other than the ostree.commit label",
            parts(|c| {
                let mut p = c.base.clone();
                p.set_label(LABEL_COMMIT, &"ab".repeat(32));
                Ok(p)
            }),
            None,
            "label says abab",
        )
        .unencapsulate(),
        refused(
            c,
            "a metadata object in a chunk layer",
            Box::new(move |c: &Ctx, dir: &Path| {
                let chunk = dirmeta_into_chunk(c, &c.base.layers[1].blob)?;
                ostree_edit(1, move |_| Ok(chunk.clone()))(c, dir)
            }),
            Some(1),
            "metadata objects belong in the commit layer only",
        )
        .unencapsulate(),
        refused(
            c,
            "a second commit object in a chunk layer",
            Box::new(|c: &Ctx, dir: &Path| {
                let l0 = &c.base.layers[0].blob;
                let (es, _) = rawtar::locate(l0)?;
                let m = es
                    .iter()
                    .find(|e| e.path.ends_with(".commit"))
                    .context("no commit")?;
                let mut extra = t();
                extra.entry(
                    Hdr::new(b'0', &m.path),
                    &l0[m.data_pos..m.data_pos + m.size],
                );
                let chunk = rawtar::append(&c.base.layers[1].blob, &extra.buf)?;
                ostree_edit(1, move |_| Ok(chunk.clone()))(c, dir)
            }),
            Some(1),
            "metadata objects belong in the commit layer only",
        )
        .unencapsulate(),
        refused(
            c,
            "an object path climbing out of the object store",
            ostree_edit(1, |tar| {
                let mut extra = t();
                extra.file("sysroot/ostree/repo/objects/../../../../usr/x.file", b"x");
                Ok(rawtar::append(tar, &extra.buf)?)
            }),
            Some(1),
            "not an ostree object name",
        )
        .unencapsulate(),
        refused(
            c,
            "a whiteout in a chunk layer's object store",
            ostree_edit(1, |tar| {
                let mut extra = t();
                extra.file("sysroot/ostree/repo/objects/.wh.00", b"");
                Ok(rawtar::append(tar, &extra.buf)?)
            }),
            Some(1),
            "not an ostree object name",
        )
        .unencapsulate(),
        refused(
            c,
            "a chunk layer left out",
            parts(|c| {
                let mut p = c.base.clone();
                let keep_last = p.layers.len() - 1;
                // Drop the first chunk that holds content objects.
                let i = (1..keep_last)
                    .find(|&i| content_object(&p.layers[i].blob, 0).is_ok())
                    .context("no chunk with content")?;
                p.layers.remove(i);
                if let Some(l) = p.manifest["layers"].as_array_mut() {
                    l.remove(i);
                }
                p.sync_diff_ids();
                Ok(p)
            }),
            None,
            "the image lacks content object",
        )
        .unencapsulate(),
        refused(
            c,
            "an ostree.final-diffid that names no layer",
            parts(|c| {
                let mut p = c.base.clone();
                p.set_label("ostree.final-diffid", &sha256_digest(b"nothing"));
                Ok(p)
            }),
            None,
            "is not among the config's diff_ids",
        )
        .unencapsulate(),
        imported(
            c,
            "the untouched sample image (control)",
            parts(|c| Ok(c.base.clone())),
            |tr| tr.expect_stat("/usr/bin/su-like", "-04755"),
        )
        .unencapsulate(),
    ]
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
