//! The host side: an imported image becomes an ostree deployment.
//!
//! ```text
//! image deploy:  storage_bridge::pull ─▶ bootable? (one kernel) ─▶ kargs (kargs.d + --karg)
//!                ─▶ origin (container-image-reference) ─▶ stage (booted) | deploy + write
//! status:        sysroot deployments ─▶ plain data (image ref, digests, version, kargs)
//! ```
//! Pure parsing lives in [`origin`] and [`kargs`]; everything that touches the sysroot in
//! [`stage`] and [`status`].

pub mod etc_merge;
pub mod kargs;
pub mod lint;
pub mod manage;
pub mod origin;
pub mod preflight;
pub mod stage;
pub mod status;
pub mod upgrade;
