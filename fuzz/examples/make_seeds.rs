//! Writes the seed corpus of every fuzz target under `corpus/<target>/seed-*` (run from
//! `fuzz/`: `cargo run --example make_seeds`). Derived layers are made with the `tar` crate;
//! ostree layers are exported from a small fixture commit by the library itself.

use std::collections::BTreeMap;
use std::path::Path;
use storage_bridge::commit::CommitTree;
use storage_bridge::tar::commit_to_tar::{write_layer, LayerContent};
use tar::{Builder, EntryType, Header};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn dir(b: &mut Builder<Vec<u8>>, path: &str) -> Result<()> {
    let mut h = header(EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, path, std::io::empty())?;
    Ok(())
}

fn file(b: &mut Builder<Vec<u8>>, path: &str, data: &[u8]) -> Result<()> {
    let mut h = header(EntryType::Regular, 0o644, data.len() as u64);
    b.append_data(&mut h, path, data)?;
    Ok(())
}

fn link(b: &mut Builder<Vec<u8>>, kind: EntryType, path: &str, target: &str) -> Result<()> {
    let mut h = header(kind, 0o777, 0);
    b.append_link(&mut h, path, target)?;
    Ok(())
}

/// Derived layers: one per feature the importer handles.
fn derived_layers() -> Result<Vec<(&'static str, Vec<u8>)>> {
    let mut out = Vec::new();

    let mut b = Builder::new(Vec::new());
    dir(&mut b, "./")?;
    dir(&mut b, "usr/")?;
    dir(&mut b, "usr/share/")?;
    file(&mut b, "usr/share/hello", b"hello\n")?;
    dir(&mut b, "etc/")?;
    file(&mut b, "etc/motd", b"welcome\n")?;
    file(&mut b, "etc/hostname", b"")?;
    dir(&mut b, "var/lib/app/")?;
    file(&mut b, "opt/app/bin", b"dropped\n")?;
    file(&mut b, "tmp/scratch", b"dropped\n")?;
    link(&mut b, EntryType::Symlink, "usr/bin/hi", "../share/hello")?;
    let mut h = header(EntryType::Char, 0o600, 0);
    b.append_data(&mut h, "dev/null", std::io::empty())?;
    let mut h = header(EntryType::Fifo, 0o600, 0);
    b.append_data(&mut h, "usr/fifo", std::io::empty())?;
    out.push(("basic", b.into_inner()?));

    let mut b = Builder::new(Vec::new());
    file(&mut b, "usr/lib/x/.wh.a", b"")?;
    file(&mut b, "usr/bin/.wh.hello", b"")?;
    file(&mut b, "etc/.wh.passwd", b"")?;
    file(&mut b, "var/.wh.lib", b"")?;
    file(&mut b, "usr/newdir/.wh.nothing", b"")?;
    out.push(("whiteouts", b.into_inner()?));

    let mut b = Builder::new(Vec::new());
    dir(&mut b, "usr/lib/x/")?;
    file(&mut b, "usr/lib/x/.wh..wh..opq", b"")?;
    file(&mut b, "usr/lib/x/c", b"c\n")?;
    file(&mut b, "usr/.wh..wh..opq", b"")?;
    file(&mut b, "usr/bin/new", b"new\n")?;
    out.push(("opaque", b.into_inner()?));

    let mut b = Builder::new(Vec::new());
    link(&mut b, EntryType::Link, "usr/bin/early", "usr/bin/late")?;
    file(&mut b, "usr/bin/late", b"late\n")?;
    link(&mut b, EntryType::Link, "usr/bin/again", "usr/bin/late")?;
    link(&mut b, EntryType::Link, "usr/bin/lower", "usr/bin/hello")?;
    link(&mut b, EntryType::Link, "etc/passwd-", "etc/passwd")?;
    file(&mut b, "opt/dropped", b"target of a kept link\n")?;
    link(&mut b, EntryType::Link, "usr/bin/from-opt", "opt/dropped")?;
    out.push(("hardlinks", b.into_inner()?));

    let mut b = Builder::new(Vec::new());
    let long_dir = format!("usr/share/{}", "d".repeat(120));
    let long = format!("{long_dir}/{}", "f".repeat(150));
    file(&mut b, &long, b"long\n")?;
    link(
        &mut b,
        EntryType::Symlink,
        "usr/bin/long-link",
        &format!("/{long}"),
    )?;
    link(&mut b, EntryType::Link, "usr/bin/long-hard", &long)?;
    out.push(("long-names", b.into_inner()?));

    let mut b = Builder::new(Vec::new());
    b.append_pax_extensions([
        ("SCHILY.xattr.user.component", &b"app"[..]),
        ("SCHILY.xattr.security.capability", &[1, 0, 0, 2][..]),
    ])?;
    file(&mut b, "usr/bin/cap", b"cap\n")?;
    b.append_pax_extensions([("SCHILY.xattr.user.dir", &b"1"[..])])?;
    dir(&mut b, "usr/lib/withx/")?;
    let p = format!("usr/share/{}", "p".repeat(200));
    b.append_pax_extensions([("path", p.as_bytes())])?;
    file(&mut b, "usr/share/short", b"pax path\n")?;
    out.push(("pax", b.into_inner()?));
    Ok(out)
}

/// The ostree layers of a small commit: one whole, a commit layer without content, a chunk.
fn ostree_layers(tmp: &Path) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let repo = storage_bridge::fixture::create_repo(&tmp.join("repo"), ostree::RepoMode::BareUser)?;
    let f = storage_bridge::fixture::Fixture::parse(
        r#"
subject "seed"
dir  usr/bin
file usr/bin/a mode=0755 content="a\n" xattr.user.component=a
hard usr/bin/a2 target=usr/bin/a
link usr/bin/sh target=a
file usr/lib/b content="b\n" xattr.security.capability=hex:01000002
dir  usr/etc
file usr/etc/passwd content="root:x:0:0::/:/usr/bin/sh\n"
dir  var
"#,
    )?;
    let c = f.commit(&repo, "seed")?;
    let tree = CommitTree::load(&repo, &c)?;
    let paths: BTreeMap<String, Vec<String>> = tree.content_paths();
    let objects: Vec<String> = paths.keys().cloned().collect();
    let mut out = Vec::new();
    for (name, structure, objs) in [
        ("whole", true, objects.clone()),
        ("commit-only", true, Vec::new()),
        ("chunk", false, objects[..objects.len() / 2 + 1].to_vec()),
    ] {
        let layer = LayerContent {
            commit_structure: structure,
            objects: objs,
        };
        let tar = write_layer(&repo, &tree, &paths, &layer, Vec::new())?;
        out.push((name, without_dirs(&tar)));
    }
    Ok(out)
}

/// `tar` without its directory entries (the 256 `objects/XX` directories of the repo skeleton
/// would be most of a seed, and the importer skips directories).
fn without_dirs(tar: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let mut i = 0;
    while i + 512 <= tar.len() {
        let h = &tar[i..i + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let size = std::str::from_utf8(&h[124..136])
            .ok()
            .and_then(|s| {
                u64::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok()
            })
            .unwrap_or(0) as usize;
        let end = i + 512 + size.div_ceil(512) * 512;
        let entry = &tar[i..end.min(tar.len())];
        match h[156] {
            b'L' | b'K' | b'x' => pending.extend_from_slice(entry),
            b'5' => pending.clear(),
            _ => {
                out.append(&mut pending);
                out.extend_from_slice(entry);
            }
        }
        i = end;
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

fn manifest_configs() -> Vec<(&'static str, Vec<u8>)> {
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let layer = |c: char, comps: Option<&str>| {
        let mut l = serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d(c), "size": 100,
        });
        if let Some(comps) = comps {
            l["annotations"] = serde_json::json!({ "ostree.components": comps });
        }
        l
    };
    let manifest = |layers: Vec<serde_json::Value>| {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": d('c'), "size": 10 },
            "layers": layers,
        })
    };
    let config = |ids: &[char], labels: serde_json::Value| {
        serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": { "Labels": labels },
            "rootfs": { "type": "layers",
                        "diff_ids": ids.iter().map(|&c| d(c)).collect::<Vec<_>>() },
        })
    };
    let pair = |m: serde_json::Value, c: serde_json::Value| {
        let mut v = serde_json::to_vec(&m).expect("json");
        v.push(0);
        v.extend(serde_json::to_vec(&c).expect("json"));
        v
    };
    let commit = "ab".repeat(32);
    vec![
        (
            "derived",
            pair(
                manifest(vec![
                    layer('1', None),
                    layer('2', Some("bash,coreutils")),
                    layer('3', Some("")),
                    layer('4', None),
                ]),
                config(
                    &['5', '6', '7', '8'],
                    serde_json::json!({ "ostree.commit": commit, "ostree.final-diffid": d('7') }),
                ),
            ),
        ),
        (
            "single",
            pair(
                manifest(vec![layer('1', None)]),
                config(&['5'], serde_json::json!({ "ostree.commit": commit })),
            ),
        ),
        (
            "plain",
            pair(
                manifest(vec![layer('1', None), layer('2', None)]),
                config(&['5', '6'], serde_json::json!({})),
            ),
        ),
    ]
}

const IMGREFS: &[&str] = &[
    "docker://quay.io/a/b:latest",
    "registry:quay.io/a/b@sha256:0000",
    "oci:/srv/os:1",
    "oci-archive:/tmp/x.tar:t",
    "docker-archive:/tmp/x.tar",
    "containers-storage:[overlay@/g+/r]localhost/os:1",
    "containers-storage:localhost/os",
    "dir:/tmp/d",
    "ostree-unverified-image:oci:/x",
    "ostree-unverified-registry:quay.io/a/b:1",
    "ostree-remote-image:fedora:docker://q/x",
    "ostree-remote-registry:fedora:q/x",
    "ostree-image-signed:containers-storage:[/g]x",
];

const PATHS: &[&str] = &[
    "./usr/bin/sh",
    "/etc/passwd",
    "etc",
    "var//lib/./x",
    "tmp/x",
    "opt/app",
    "usr/../etc",
    "./",
    "run",
];

fn write(dir: &Path, target: &str, name: &str, data: &[u8]) -> Result<()> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join(format!("seed-{name}")), data)?;
    Ok(())
}

fn main() -> Result<()> {
    let out = Path::new(
        &std::env::args()
            .nth(1)
            .unwrap_or_else(|| "corpus".to_string()),
    )
    .to_path_buf();
    for (name, data) in derived_layers()? {
        write(&out, "tar_to_tree", name, &data)?;
    }
    let tmp = tempfile::tempdir()?;
    for (name, data) in ostree_layers(tmp.path())? {
        write(&out, "ostree_layer_tar", name, &data)?;
    }
    for (name, data) in manifest_configs() {
        write(&out, "manifest_config", name, &data)?;
    }
    for (i, s) in IMGREFS.iter().enumerate() {
        write(&out, "imgref", &i.to_string(), s.as_bytes())?;
    }
    for (i, s) in PATHS.iter().enumerate() {
        write(&out, "path_policy", &i.to_string(), s.as_bytes())?;
    }
    Ok(())
}
