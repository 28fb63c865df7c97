//! What skopeo 1.9.3's proxy cannot say about a containers-storage image: where its store is and
//! the uncompressed size of each layer (needed to `GetBlob` a layer by its diff_id; REFERENCE §8).
//!
//! ```text
//! GRAPHROOT/
//!   overlay-layers/layers.json   [{"id", "diff-digest": DIFF_ID, "diff-size": N,
//!                                  "compressed-diff-digest", "compressed-size", …}, …]
//!   overlay-images/images.json   (not read here)
//! ```
//!
//! The graph root of a reference: the explicit `[DRIVER@GRAPHROOT+RUNROOT]` store spec; else
//! `graphroot` from the storage.conf containers/storage itself reads (`CONTAINERS_STORAGE_CONF`,
//! else `/etc/containers/storage.conf`, else `/usr/share/containers/storage.conf`); else
//! `/var/lib/containers/storage`. Root's stores only: rootless defaults are not modelled.

use crate::imgref::{ImageReference, Transport};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Default graph root of root's store.
pub const DEFAULT_GRAPHROOT: &str = "/var/lib/containers/storage";
/// Largest storage.conf we read.
const MAX_STORAGE_CONF: u64 = 1 << 20;
/// Largest layers.json we read (about 1 KiB a layer).
const MAX_LAYERS_JSON: u64 = 64 << 20;
/// The storage.conf files containers/storage reads when `CONTAINERS_STORAGE_CONF` is unset.
const SYSTEM_STORAGE_CONFS: &[&str] = &[
    "/etc/containers/storage.conf",
    "/usr/share/containers/storage.conf",
];

/// A containers-storage store: graph root and driver (`overlay` unless the reference says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CstorStore {
    pub graphroot: PathBuf,
    pub driver: String,
}

/// The store a `containers-storage:` reference reads from (see the module docs for the order).
pub fn cstor_store(imgref: &str) -> Result<CstorStore> {
    let r = ImageReference::parse(imgref)?;
    if r.transport != Transport::ContainerStorage {
        bail!("{imgref} is not a containers-storage: reference");
    }
    let s = r
        .storage_ref()
        .map_err(|rule| anyhow::anyhow!("{imgref}: {rule}"))?;
    if let Some(spec) = s.store {
        return Ok(CstorStore {
            graphroot: PathBuf::from(spec.graphroot),
            driver: spec.driver.unwrap_or("overlay").to_string(),
        });
    }
    let conf = match std::env::var_os("CONTAINERS_STORAGE_CONF") {
        Some(p) => Some(PathBuf::from(p)),
        None => SYSTEM_STORAGE_CONFS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists()),
    };
    let Some(conf) = conf else {
        return Ok(CstorStore {
            graphroot: PathBuf::from(DEFAULT_GRAPHROOT),
            driver: "overlay".into(),
        });
    };
    let text = read_bounded(&conf, MAX_STORAGE_CONF)?;
    let text =
        String::from_utf8(text).with_context(|| format!("{} is not UTF-8", conf.display()))?;
    storage_conf_store(&text).with_context(|| format!("reading {}", conf.display()))
}

/// The store a storage.conf names (`[storage] graphroot`, `driver`), with the defaults for
/// what it leaves out.
pub fn storage_conf_store(text: &str) -> Result<CstorStore> {
    #[derive(Deserialize, Default)]
    struct Conf {
        #[serde(default)]
        storage: Storage,
    }
    #[derive(Deserialize, Default)]
    struct Storage {
        graphroot: Option<String>,
        driver: Option<String>,
    }
    let c: Conf = toml::from_str(text).context("parsing storage.conf")?;
    let graphroot = c
        .storage
        .graphroot
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| DEFAULT_GRAPHROOT.to_string());
    if !graphroot.starts_with('/') {
        bail!("storage.conf graphroot {graphroot:?} is not an absolute path");
    }
    Ok(CstorStore {
        graphroot: PathBuf::from(graphroot),
        driver: c
            .storage
            .driver
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "overlay".into()),
    })
}

/// The uncompressed size containers-storage recorded for the layer with this diff_id
/// (`diff-size` of the `overlay-layers/layers.json` entry whose `diff-digest` it is), or `None`
/// when no layer has it or its size is not recorded.
pub fn cstor_uncompressed_size(graphroot: &Path, diff_id: &str) -> Result<Option<u64>> {
    cstor_uncompressed_size_in(graphroot, "overlay", diff_id)
}

/// [`cstor_uncompressed_size`] for any driver (`DRIVER-layers/layers.json`).
pub fn cstor_uncompressed_size_in(
    graphroot: &Path,
    driver: &str,
    diff_id: &str,
) -> Result<Option<u64>> {
    let path = graphroot.join(format!("{driver}-layers/layers.json"));
    let data = read_bounded(&path, MAX_LAYERS_JSON)?;
    layers_json_size(&data, diff_id).with_context(|| format!("reading {}", path.display()))
}

/// The `diff-size` of the entry whose `diff-digest` is `diff_id`, from layers.json's bytes.
pub fn layers_json_size(data: &[u8], diff_id: &str) -> Result<Option<u64>> {
    #[derive(Deserialize)]
    struct Layer {
        #[serde(rename = "diff-digest", default)]
        diff_digest: Option<String>,
        #[serde(rename = "diff-size", default)]
        diff_size: Option<i64>,
    }
    let layers: Vec<Layer> = serde_json::from_slice(data).context("parsing layers.json")?;
    let mut sizes = layers
        .iter()
        .filter(|l| l.diff_digest.as_deref() == Some(diff_id))
        .map(|l| l.diff_size.and_then(|s| u64::try_from(s).ok()));
    let Some(first) = sizes.next() else {
        return Ok(None);
    };
    // The same content can sit in several layers (different parents); their sizes agree.
    for other in sizes {
        if other.is_some() && first.is_some() && other != first {
            bail!("layers.json gives {diff_id} two different sizes ({first:?}, {other:?})");
        }
    }
    Ok(first)
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {}", path.display()))?;
    if buf.len() as u64 > max {
        bail!("{} is over {max} bytes", path.display());
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_from_reference_spec() {
        let s = cstor_store("containers-storage:[overlay@/g/root+/r]localhost/os:1").unwrap();
        assert_eq!(
            s,
            CstorStore {
                graphroot: "/g/root".into(),
                driver: "overlay".into()
            }
        );
        let s = cstor_store("containers-storage:[vfs@/g+/r]x").unwrap();
        assert_eq!(s.driver, "vfs");
        let s = cstor_store("containers-storage:[/g]x").unwrap();
        assert_eq!(s.driver, "overlay");
        assert!(cstor_store("oci:/x").is_err());
    }

    #[test]
    fn storage_conf_parsing() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"/t/root\"\nrunroot = \"/t/rr\"\n",
                "/t/root",
                "overlay",
            ),
            ("[storage]\ndriver = \"vfs\"\n", DEFAULT_GRAPHROOT, "vfs"),
            ("", DEFAULT_GRAPHROOT, "overlay"),
            (
                "[storage]\ngraphroot = \"\"\n[storage.options]\nmount_program = \"x\"\n",
                DEFAULT_GRAPHROOT,
                "overlay",
            ),
        ];
        for (text, root, driver) in cases {
            let s = storage_conf_store(text).unwrap();
            assert_eq!(
                (s.graphroot.to_str().unwrap(), s.driver.as_str()),
                (*root, *driver),
                "{text}"
            );
        }
        assert!(storage_conf_store("[storage\n").is_err());
        assert!(storage_conf_store("[storage]\ngraphroot = 3\n").is_err());
        assert!(storage_conf_store("[storage]\ngraphroot = \"rel\"\n").is_err());
    }

    #[test]
    fn layers_json_sizes() {
        let j = br#"[
            {"id":"a","diff-digest":"sha256:aa","diff-size":1024,"compressed-diff-digest":"sha256:ca","compressed-size":300},
            {"id":"b","parent":"a","diff-digest":"sha256:bb","diff-size":2048},
            {"id":"c","diff-digest":"sha256:cc"},
            {"id":"d"}
        ]"#;
        assert_eq!(layers_json_size(j, "sha256:aa").unwrap(), Some(1024));
        assert_eq!(layers_json_size(j, "sha256:bb").unwrap(), Some(2048));
        assert_eq!(layers_json_size(j, "sha256:cc").unwrap(), None);
        assert_eq!(
            layers_json_size(j, "sha256:ca").unwrap(),
            None,
            "not by compressed digest"
        );
        assert_eq!(layers_json_size(j, "sha256:zz").unwrap(), None);
        assert_eq!(layers_json_size(b"[]", "sha256:aa").unwrap(), None);
        assert!(layers_json_size(b"{", "sha256:aa").is_err());
        assert!(layers_json_size(br#"{"id":"a"}"#, "sha256:aa").is_err());
        let two = br#"[{"diff-digest":"sha256:aa","diff-size":1},{"diff-digest":"sha256:aa","diff-size":2}]"#;
        assert!(layers_json_size(two, "sha256:aa").is_err());
    }

    #[test]
    fn layers_json_is_read_from_the_graphroot() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("overlay-layers")).unwrap();
        std::fs::write(
            d.path().join("overlay-layers/layers.json"),
            r#"[{"diff-digest":"sha256:aa","diff-size":7}]"#,
        )
        .unwrap();
        assert_eq!(
            cstor_uncompressed_size(d.path(), "sha256:aa").unwrap(),
            Some(7)
        );
        let e = cstor_uncompressed_size_in(d.path(), "vfs", "sha256:aa").unwrap_err();
        assert!(format!("{e:#}").contains("vfs-layers/layers.json"), "{e:#}");
    }
}
