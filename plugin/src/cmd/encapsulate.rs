//! `ostree-container encapsulate`: ostree commit ─▶ image.

use crate::cli::EncapsulateArgs;
use crate::render;
use anyhow::{anyhow, bail, Context, Result};
use storage_bridge::chunking::sources::ContentMeta;
use storage_bridge::imgref::ImageReference;
use storage_bridge::transport::SkopeoOptions;
use storage_bridge::ExportOptions;

fn parse_label(s: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("--label {s:?}: expected KEY=VALUE"))?;
    if k.is_empty() {
        bail!("--label {s:?}: the key is empty");
    }
    Ok((k.to_string(), v.to_string()))
}

pub fn run(a: EncapsulateArgs) -> Result<()> {
    let dest = ImageReference::parse(&a.imgref)?;
    let mut o = ExportOptions::default();
    for l in &a.labels {
        let (k, v) = parse_label(l)?;
        o.labels.insert(k, v);
    }
    if !a.cmd.is_empty() {
        o.cmd = Some(a.cmd.clone());
    }
    if let Some(p) = &a.config {
        let data = std::fs::read(p).with_context(|| format!("reading --config {}", p.display()))?;
        let v: serde_json::Value = serde_json::from_slice(&data)
            .with_context(|| format!("--config {}: not JSON", p.display()))?;
        let map = v
            .as_object()
            .cloned()
            .ok_or_else(|| anyhow!("--config {}: expected a JSON object", p.display()))?;
        o.base_config = Some(map);
    }
    o.copymeta = a.copymeta.clone();
    o.copymeta_opt = a.copymeta_opt.clone();
    o.max_layers = a.max_layers;
    if let Some(p) = &a.prior_build {
        o.prior_build = Some(ImageReference::parse(p).context("--prior-build")?);
    }
    if let Some(c) = &a.compression {
        o.compression = Some(
            c.parse()
                .map_err(|e: String| anyhow!("--compression: {e}"))?,
        );
    }
    if let Some(p) = &a.contentmeta {
        let data =
            std::fs::read(p).with_context(|| format!("reading --contentmeta {}", p.display()))?;
        let cm =
            ContentMeta::parse(&data).with_context(|| format!("--contentmeta {}", p.display()))?;
        if a.max_layers.is_none() {
            // As ostree-ext: room for every listed layer, plus commit, churn and reserved.
            o.max_layers =
                Some((cm.layers.len() as u32 + 3).max(storage_bridge::chunking::MIN_LAYERS));
        }
        o.contentmeta = Some(cm);
    }
    let mut s = SkopeoOptions::default();
    s.authfile = a.authfile.clone();
    s.tls_verify = a.tls_verify;
    o.skopeo = s;
    o.jobs = a.jobs;

    let progress = render::LayerBars::new(!a.quiet && !a.json);
    let report = storage_bridge::export(&a.repo, &a.rev, &dest, &o, &progress)
        .with_context(|| format!("exporting {} from {} to {dest}", a.rev, a.repo.display()))?;
    progress.finish();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if !a.quiet {
        render::export_summary(&report);
    }
    println!("{}", report.manifest_digest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_need_a_key_and_equals() {
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("=v").is_err());
    }
}
