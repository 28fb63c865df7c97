//! Commit metadata ⇄ labels, config and manifest documents. Pure functions: no I/O.
//!
//! JSON is built as `serde_json::Value` whose maps are sorted (serde_json without
//! `preserve_order`), so the same inputs always serialize to the same bytes.

use super::layer::LayerBlob;
use super::BlobRef;
use crate::commit::CommitMeta;
use crate::labels::{self, media};
use anyhow::{anyhow, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// What the image documents are made from, besides the layers.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ImageInputs {
    pub commit: String,
    pub meta: CommitMeta,
    /// `--label K=V`: win over everything derived.
    pub labels: BTreeMap<String, String>,
    /// `--copymeta KEY`: commit metadata string keys copied as labels (must exist).
    pub copymeta: Vec<String>,
    /// `--copymeta-opt KEY`: copied when present.
    pub copymeta_opt: Vec<String>,
    /// `--cmd`: overrides the commit's `ostree.container-cmd`.
    pub cmd: Option<Vec<String>>,
    /// `--config`: the container `config` object to start from.
    pub base_config: Option<Map<String, Value>>,
    /// Overrides `created` (contentmeta's `created`).
    pub created: Option<String>,
    /// OCI architecture name; defaults to the host's.
    pub architecture: Option<String>,
}

/// One layer as the documents describe it.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    pub blob: LayerBlob,
    /// History `created_by`.
    pub description: String,
    /// Components in this layer (chunk layers carry them as an annotation); None for layer 0.
    pub components: Option<Vec<String>>,
}

/// The host architecture in OCI's spelling.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "x86" => "386",
        "arm" => "arm",
        other => other,
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix timestamp (UTC), without a date library.
pub fn format_timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// The labels of the image (config `Labels` and manifest annotations alike), without
/// `ostree.final-diffid`, which needs the layers.
pub fn labels_for(inputs: &ImageInputs) -> Result<BTreeMap<String, String>> {
    let mut l = BTreeMap::new();
    for k in &inputs.copymeta {
        let v = inputs.meta.strings.get(k).ok_or_else(|| {
            anyhow!("--copymeta {k}: the commit has no string metadata key {k:?}")
        })?;
        l.insert(k.clone(), v.clone());
    }
    for k in &inputs.copymeta_opt {
        if let Some(v) = inputs.meta.strings.get(k) {
            l.insert(k.clone(), v.clone());
        }
    }
    if let Some(b) = inputs.meta.bootable {
        l.insert(labels::OSTREE_BOOTABLE.into(), b.to_string());
        l.insert(labels::BOOTC.into(), "1".into());
    }
    if let Some(k) = &inputs.meta.linux {
        l.insert(labels::OSTREE_LINUX.into(), k.clone());
    }
    if let Some(v) = &inputs.meta.version {
        l.insert(labels::OCI_VERSION.into(), v.clone());
    }
    l.insert(labels::OSTREE_COMMIT.into(), inputs.commit.clone());
    for (k, v) in &inputs.labels {
        l.insert(k.clone(), v.clone());
    }
    Ok(l)
}

/// The history text of a chunk holding `components` (ostree-ext's wording).
pub fn chunk_description(components: &[String]) -> String {
    match components {
        [] => labels::RESERVED_BIN_NAME.to_string(),
        [one] => one.clone(),
        several if several.len() <= 5 => several.join(" and "),
        many => format!("{} components", many.len()),
    }
}

/// The history text of layer 0.
pub fn commit_description(inputs: &ImageInputs) -> String {
    if inputs.meta.subject.is_empty() {
        format!("ostree export of commit {}", inputs.commit)
    } else {
        inputs.meta.subject.clone()
    }
}

/// Build the image config document. `layers[0]` is the commit layer; the last layer that is
/// part of the ostree commit is the last one given.
pub fn image_config(
    inputs: &ImageInputs,
    layers: &[LayerEntry],
) -> Result<(Value, BTreeMap<String, String>)> {
    let last = layers
        .last()
        .ok_or_else(|| anyhow!("an image needs at least one layer"))?;
    let mut labels = labels_for(inputs)?;
    labels
        .entry(labels::FINAL_DIFFID.into())
        .or_insert_with(|| last.blob.diff_id.clone());
    let created = inputs
        .created
        .clone()
        .unwrap_or_else(|| format_timestamp(inputs.meta.timestamp));
    let mut config = inputs.base_config.clone().unwrap_or_default();
    let mut lmap: Map<String, Value> = config
        .get("Labels")
        .and_then(|v| v.as_object())
        .cloned()
        .unwrap_or_default();
    for (k, v) in &labels {
        lmap.insert(k.clone(), Value::String(v.clone()));
    }
    config.insert("Labels".into(), Value::Object(lmap));
    if let Some(cmd) = inputs.cmd.as_ref().or(inputs.meta.cmd.as_ref()) {
        config.insert("Cmd".into(), json!(cmd));
    }
    let history: Vec<Value> = layers
        .iter()
        .map(|l| json!({ "created": created, "created_by": l.description }))
        .collect();
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.blob.diff_id.as_str()).collect();
    let cfg = json!({
        "architecture": inputs.architecture.as_deref().unwrap_or(host_architecture()),
        "os": "linux",
        "created": created,
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    });
    Ok((cfg, labels))
}

/// Build the manifest document.
pub fn image_manifest(
    config: &BlobRef,
    layers: &[LayerEntry],
    labels: &BTreeMap<String, String>,
) -> Value {
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| {
            let mut d = json!({
                "mediaType": l.blob.media_type,
                "digest": l.blob.blob.digest,
                "size": l.blob.blob.size,
            });
            if let Some(c) = &l.components {
                let mut c = c.clone();
                c.sort();
                let sep = labels::COMPONENT_SEPARATOR.to_string();
                d["annotations"] = json!({ labels::COMPONENTS: c.join(&sep) });
            }
            d
        })
        .collect();
    json!({
        "schemaVersion": 2,
        "mediaType": media::MANIFEST,
        "config": { "mediaType": media::CONFIG, "digest": config.digest, "size": config.size },
        "layers": layers,
        "annotations": labels,
    })
}

/// Serialize canonically (sorted keys, no whitespace).
pub fn to_canonical_json(v: &Value) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(v)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(d: &str) -> LayerEntry {
        LayerEntry {
            blob: LayerBlob {
                blob: BlobRef {
                    digest: format!("sha256:{}", d.repeat(64)),
                    size: 10,
                },
                diff_id: format!("sha256:{}", d.repeat(64)),
                uncompressed_size: 10,
                media_type: media::LAYER_GZIP,
            },
            description: "x".into(),
            components: None,
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn labels_from_commit_and_cli() {
        let mut i = ImageInputs {
            commit: "c".repeat(64),
            ..Default::default()
        };
        i.meta.version = Some("42".into());
        i.meta.bootable = Some(true);
        i.meta.linux = Some("6.1.0".into());
        i.meta.strings.insert("vendor".into(), "acme".into());
        i.copymeta = vec!["vendor".into()];
        i.labels
            .insert(labels::OCI_VERSION.into(), "override".into());
        let l = labels_for(&i).unwrap();
        assert_eq!(l[labels::OSTREE_BOOTABLE], "true");
        assert_eq!(l[labels::BOOTC], "1");
        assert_eq!(l[labels::OSTREE_LINUX], "6.1.0");
        assert_eq!(l[labels::OCI_VERSION], "override");
        assert_eq!(l["vendor"], "acme");
        i.copymeta = vec!["missing".into()];
        assert!(labels_for(&i).unwrap_err().to_string().contains("missing"));
    }

    #[test]
    fn config_points_final_diffid_at_last_layer_and_is_canonical() {
        let i = ImageInputs {
            commit: "c".repeat(64),
            ..Default::default()
        };
        let layers = [layer("a"), layer("b")];
        let (cfg, labels) = image_config(&i, &layers).unwrap();
        assert_eq!(labels[labels::FINAL_DIFFID], layers[1].blob.diff_id);
        let bytes = to_canonical_json(&cfg).unwrap();
        let s = String::from_utf8(bytes).unwrap();
        // Keys sorted at the top level: architecture < config < created < history < os < rootfs.
        let pos: Vec<usize> = [
            "\"architecture\"",
            "\"config\"",
            "\"created\"",
            "\"history\"",
            "\"os\"",
            "\"rootfs\"",
        ]
        .iter()
        .map(|k| s.find(k).unwrap())
        .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{s}");
        assert_eq!(cfg["history"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn chunk_names() {
        let n =
            |v: &[&str]| chunk_description(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(n(&[]), "Reserved for new packages");
        assert_eq!(n(&["a"]), "a");
        assert_eq!(n(&["a", "b", "c"]), "a and b and c");
        assert_eq!(n(&["1", "2", "3", "4", "5", "6"]), "6 components");
    }
}
