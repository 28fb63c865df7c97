//! Kernel arguments from the image: `/usr/lib/bootc/kargs.d/*.toml` (bootc's format). Pure.
//!
//! ```toml
//! kargs = ["console=ttyS0", "quiet"]
//! match-architectures = ["x86_64", "aarch64"]   # optional
//! ```

use anyhow::{bail, Context, Result};

/// Where an image keeps its kernel argument files, in the commit.
pub const KARGS_DIR: &str = "usr/lib/bootc/kargs.d";

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KargsFile {
    kargs: Vec<String>,
    #[serde(rename = "match-architectures", default)]
    match_architectures: Option<Vec<String>>,
}

/// The kernel arguments one file adds on `arch` (Rust's `std::env::consts::ARCH` spelling).
pub fn parse_file(name: &str, text: &str, arch: &str) -> Result<Vec<String>> {
    let f: KargsFile =
        toml::from_str(text).with_context(|| format!("{KARGS_DIR}/{name}: not a kargs file"))?;
    for k in &f.kargs {
        if k.is_empty() || k.chars().any(|c| c.is_whitespace() && c != ' ') {
            bail!("{KARGS_DIR}/{name}: kernel argument {k:?} is empty or has a control character");
        }
    }
    if let Some(archs) = &f.match_architectures {
        if !archs.iter().any(|a| a == arch) {
            return Ok(Vec::new());
        }
    }
    Ok(f.kargs)
}

/// Kernel arguments from every `*.toml` file, in file-name order.
pub fn from_files(files: &[(String, String)], arch: &str) -> Result<Vec<String>> {
    let mut files: Vec<&(String, String)> =
        files.iter().filter(|(n, _)| n.ends_with(".toml")).collect();
    files.sort();
    let mut out = Vec::new();
    for (n, t) in files {
        out.extend(parse_file(n, t, arch)?);
    }
    Ok(out)
}

/// The kernel arguments of a new deployment: the current ones, less those the previous image
/// asked for and the new one no longer does, plus the new image's, plus the user's (`--karg`),
/// each once, in that order.
pub fn merge(
    current: &[String],
    old_image: &[String],
    new_image: &[String],
    user: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = current
        .iter()
        .filter(|k| !old_image.contains(k) || new_image.contains(k))
        .cloned()
        .collect();
    for k in new_image.iter().chain(user) {
        if !out.contains(k) {
            out.push(k.clone());
        }
    }
    out
}

/// Where each karg of a deployment comes from: "ostree" (the `ostree=` boot argument),
/// "image" (its kargs.d) or "local" (added by the user).
pub fn sources(kargs: &[String], image: &[String]) -> Vec<(String, &'static str)> {
    kargs
        .iter()
        .map(|k| {
            let src = if k.starts_with("ostree=") {
                "ostree"
            } else if image.contains(k) {
                "image"
            } else {
                "local"
            };
            (k.clone(), src)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_apply_the_image_difference_and_keep_local_kargs() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let current = v(&["quiet", "old.karg", "shared", "mine=1"]);
        let out = merge(
            &current,
            &v(&["old.karg", "shared", "quiet"]),
            &v(&["shared", "new.karg", "quiet"]),
            &v(&["cli=1"]),
        );
        assert_eq!(out, v(&["quiet", "shared", "mine=1", "new.karg", "cli=1"]));
        let s = sources(&v(&["ostree=/x", "new.karg", "mine=1"]), &v(&["new.karg"]));
        assert_eq!(
            s.iter().map(|x| x.1).collect::<Vec<_>>(),
            vec!["ostree", "image", "local"]
        );
    }

    #[test]
    fn parses_and_filters_by_architecture() {
        assert_eq!(
            parse_file("a.toml", "kargs = [\"quiet\", \"x=1\"]", "x86_64").unwrap(),
            vec!["quiet", "x=1"]
        );
        let t = "kargs = [\"arm\"]\nmatch-architectures = [\"aarch64\"]";
        assert!(parse_file("b.toml", t, "x86_64").unwrap().is_empty());
        assert_eq!(parse_file("b.toml", t, "aarch64").unwrap(), vec!["arm"]);
        assert!(parse_file("c.toml", "kargs = 1", "x86_64")
            .unwrap_err()
            .to_string()
            .contains("c.toml"));
        assert!(parse_file("d.toml", "karg = []", "x86_64").is_err());
        let files = vec![
            ("20-b.toml".to_string(), "kargs=[\"b\"]".to_string()),
            ("10-a.toml".into(), "kargs=[\"a\"]".into()),
            ("README".into(), "x".into()),
        ];
        assert_eq!(from_files(&files, "x86_64").unwrap(), vec!["a", "b"]);
    }
}
