//! Every label, annotation, media type and well-known name of the format, once.

/// The ostree commit checksum an image encapsulates (config label and manifest annotation).
pub const OSTREE_COMMIT: &str = "ostree.commit";
/// `sha256:` diff_id of the last ostree layer; derived layers start after it.
pub const FINAL_DIFFID: &str = "ostree.final-diffid";
/// Set to "true" when the commit metadata has `ostree.bootable`.
pub const OSTREE_BOOTABLE: &str = "ostree.bootable";
/// bootc's marker for bootable images, "1".
pub const BOOTC: &str = "containers.bootc";
/// The kernel version, copied from commit metadata.
pub const OSTREE_LINUX: &str = "ostree.linux";
/// OCI's version annotation, from commit metadata `version`.
pub const OCI_VERSION: &str = "org.opencontainers.image.version";
/// OCI's creation-time annotation.
pub const OCI_CREATED: &str = "org.opencontainers.image.created";
/// OCI's tag annotation in an index.
pub const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Per chunk layer: the sorted components it holds, joined by [`COMPONENT_SEPARATOR`].
pub const COMPONENTS: &str = "ostree.components";
/// Separator of [`COMPONENTS`] values.
pub const COMPONENT_SEPARATOR: char = ',';
/// The xattr that pins a file (or, on a directory, everything below it) to a component.
pub const COMPONENT_XATTR: &str = "user.component";
/// Commit metadata key holding the container command.
pub const COMMIT_META_CMD: &str = "ostree.container-cmd";
/// Commit metadata key for the version.
pub const COMMIT_META_VERSION: &str = "version";
/// Commit metadata key marking a bootable commit.
pub const COMMIT_META_BOOTABLE: &str = "ostree.bootable";
/// Commit metadata key naming the kernel.
pub const COMMIT_META_LINUX: &str = "ostree.linux";

/// History text of the reserved (initially empty) bin.
pub const RESERVED_BIN_NAME: &str = "Reserved for new packages";
/// Component name of content no package owns and that changes every build.
pub const UNPACKAGED: &str = "unpackaged";

/// Layer media types.
pub mod media {
    pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
}
