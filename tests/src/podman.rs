//! Private container configuration for one test (filled in below).
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PodmanEnv {
    pub root: PathBuf,
    pub graphroot: PathBuf,
    pub runroot: PathBuf,
}

impl PodmanEnv {
    pub fn new(base: &Path) -> Result<Self> {
        let root = base.join("containers");
        std::fs::create_dir_all(&root)?;
        Ok(PodmanEnv {
            graphroot: root.join("graph"),
            runroot: root.join("run"),
            root,
        })
    }
    pub fn apply(&self, _c: &mut Command) {}
    pub fn cleanup(&mut self) {}
}
