//! Tar streams of ostree content ("tar format v1", see `shared/REFERENCE.md` §2).
//!
//! - [`commit_to_tar`]: ostree commit ─▶ tar, one stream per image layer (sync, any `Write`).
//! - [`layer_to_tree`]: derived layer ─▶ in-memory tree changes (whiteouts, hardlinks, path policy).
//! - [`tar_to_commit`]: ostree layers ─▶ verified objects in a repo (sync, any `Read`).

pub mod commit_to_tar;
pub mod layer_to_tree;
pub mod tar_to_commit;
