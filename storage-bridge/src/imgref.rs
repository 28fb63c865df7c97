//! User-facing image references: `TRANSPORT:NAME` and the ostree-level forms that say how an
//! image is verified. Pure parsing, table-tested; nothing here touches the filesystem.

use std::fmt;

/// Why a reference did not parse. The message names the input and the rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid image reference {input:?}: {rule}")]
pub struct ParseError {
    pub input: String,
    pub rule: &'static str,
}

fn err(input: &str, rule: &'static str) -> ParseError {
    ParseError {
        input: input.to_string(),
        rule,
    }
}

/// How the image is stored or reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// A registry (`docker://` or `registry:`).
    Registry,
    /// An OCI image layout directory (`oci:DIR[:TAG]`).
    OciDir,
    /// A tar of an OCI layout (`oci-archive:FILE[:TAG]`).
    OciArchive,
    /// `docker save` format (`docker-archive:FILE[:REF]`).
    DockerArchive,
    /// podman's and buildah's store (`containers-storage:[DRIVER@ROOT+RUNROOT]NAME`).
    ContainerStorage,
    /// skopeo's plain directory format (`dir:DIR`).
    Dir,
}

impl Transport {
    /// The prefix as skopeo spells it, colon included.
    pub fn prefix(self) -> &'static str {
        match self {
            Transport::Registry => "docker://",
            Transport::OciDir => "oci:",
            Transport::OciArchive => "oci-archive:",
            Transport::DockerArchive => "docker-archive:",
            Transport::ContainerStorage => "containers-storage:",
            Transport::Dir => "dir:",
        }
    }
}

/// A plain image reference: transport and name, as skopeo takes them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    pub transport: Transport,
    pub name: String,
}

/// A containers-storage reference split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef<'a> {
    /// `[DRIVER@GRAPHROOT+RUNROOT]`, when given.
    pub store: Option<StoreSpec<'a>>,
    /// The image name (or ID) inside the store.
    pub image: &'a str,
}

/// The store part of `containers-storage:[DRIVER@GRAPHROOT+RUNROOT]NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec<'a> {
    pub driver: Option<&'a str>,
    pub graphroot: &'a str,
    pub runroot: Option<&'a str>,
}

impl ImageReference {
    /// Parse `TRANSPORT:NAME`.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let (transport, name) = if let Some(rest) = s.strip_prefix("docker://") {
            (Transport::Registry, rest)
        } else if let Some(rest) = s.strip_prefix("registry:") {
            (Transport::Registry, rest)
        } else {
            let (t, rest) = s.split_once(':').ok_or_else(|| {
                err(
                    s,
                    "expected TRANSPORT:NAME (e.g. oci:/path or docker://host/name)",
                )
            })?;
            let transport = match t {
                "oci" => Transport::OciDir,
                "oci-archive" => Transport::OciArchive,
                "docker-archive" => Transport::DockerArchive,
                "containers-storage" => Transport::ContainerStorage,
                "dir" => Transport::Dir,
                "docker" => return Err(err(s, "the docker transport is written docker://NAME")),
                _ => {
                    return Err(err(
                        s,
                        "unknown transport (known: docker://, registry:, oci:, oci-archive:, \
                         docker-archive:, containers-storage:, dir:)",
                    ))
                }
            };
            (transport, rest)
        };
        if name.is_empty() {
            return Err(err(s, "the name after the transport is empty"));
        }
        if name.contains('\0') || name.contains('\n') {
            return Err(err(s, "the name contains a NUL or newline"));
        }
        let r = ImageReference {
            transport,
            name: name.to_string(),
        };
        if transport == Transport::ContainerStorage {
            r.storage_ref().map_err(|rule| err(s, rule))?;
        }
        Ok(r)
    }

    /// For `oci:` and `oci-archive:`: the path and optional tag (split at the first `:`).
    pub fn path_and_tag(&self) -> (&str, Option<&str>) {
        match self.name.split_once(':') {
            Some((p, t)) if !t.is_empty() => (p, Some(t)),
            Some((p, _)) => (p, None),
            None => (&self.name, None),
        }
    }

    /// For `containers-storage:`: the store spec and the image name.
    pub fn storage_ref(&self) -> Result<StorageRef<'_>, &'static str> {
        let n = self.name.as_str();
        let Some(rest) = n.strip_prefix('[') else {
            return Ok(StorageRef {
                store: None,
                image: n,
            });
        };
        let (spec, image) = rest
            .split_once(']')
            .ok_or("containers-storage store spec has no closing ']'")?;
        let (driver, roots) = match spec.split_once('@') {
            Some((d, r)) => (Some(d), r),
            None => (None, spec),
        };
        let (graphroot, runroot) = match roots.split_once('+') {
            Some((g, r)) => (g, Some(r)),
            None => (roots, None),
        };
        if graphroot.is_empty() || !graphroot.starts_with('/') {
            return Err("containers-storage graph root must be an absolute path");
        }
        if runroot.is_some_and(|r| !r.starts_with('/')) {
            return Err("containers-storage run root must be an absolute path");
        }
        if image.is_empty() {
            return Err("containers-storage reference names no image");
        }
        Ok(StorageRef {
            store: Some(StoreSpec {
                driver,
                graphroot,
                runroot,
            }),
            image,
        })
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.transport.prefix(), self.name)
    }
}

impl std::str::FromStr for ImageReference {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// How an image's content is verified on import (REFERENCE §1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureSource {
    /// `ostree-unverified-image:` / `ostree-unverified-registry:` (and plain references).
    Unverified,
    /// `ostree-remote-image:REMOTE:` / `ostree-remote-registry:REMOTE:`: the commit's signature,
    /// checked with the keys of that ostree remote.
    OstreeRemote(String),
    /// `ostree-image-signed:`: containers-policy.json decides.
    ContainerPolicy,
}

/// An image reference with its verification: `ostree-unverified-image:oci:/srv/os` etc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OstreeImageReference {
    pub sigverify: SignatureSource,
    pub imgref: ImageReference,
}

impl OstreeImageReference {
    /// Parse an ostree image reference; a plain `TRANSPORT:NAME` counts as unverified.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let (sigverify, rest) = if let Some(r) = s.strip_prefix("ostree-unverified-image:") {
            (SignatureSource::Unverified, r.to_string())
        } else if let Some(r) = s.strip_prefix("ostree-unverified-registry:") {
            (SignatureSource::Unverified, format!("docker://{r}"))
        } else if let Some(r) = s.strip_prefix("ostree-image-signed:") {
            (SignatureSource::ContainerPolicy, r.to_string())
        } else if let Some(r) = s.strip_prefix("ostree-remote-image:") {
            let (remote, r) = r
                .split_once(':')
                .ok_or_else(|| err(s, "expected ostree-remote-image:REMOTE:TRANSPORT:NAME"))?;
            (
                SignatureSource::OstreeRemote(remote.to_string()),
                r.to_string(),
            )
        } else if let Some(r) = s.strip_prefix("ostree-remote-registry:") {
            let (remote, r) = r
                .split_once(':')
                .ok_or_else(|| err(s, "expected ostree-remote-registry:REMOTE:NAME"))?;
            (
                SignatureSource::OstreeRemote(remote.to_string()),
                format!("docker://{r}"),
            )
        } else {
            (SignatureSource::Unverified, s.to_string())
        };
        if let SignatureSource::OstreeRemote(r) = &sigverify {
            if r.is_empty() {
                return Err(err(s, "the remote name is empty"));
            }
        }
        let imgref = ImageReference::parse(&rest).map_err(|e| ParseError {
            input: s.to_string(),
            rule: e.rule,
        })?;
        Ok(OstreeImageReference { sigverify, imgref })
    }
}

impl fmt::Display for OstreeImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sigverify {
            SignatureSource::Unverified => write!(f, "ostree-unverified-image:{}", self.imgref),
            SignatureSource::OstreeRemote(r) => {
                write!(f, "ostree-remote-image:{r}:{}", self.imgref)
            }
            SignatureSource::ContainerPolicy => write!(f, "ostree-image-signed:{}", self.imgref),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_transport() {
        let cases: &[(&str, Transport, &str)] = &[
            (
                "docker://quay.io/a/b:latest",
                Transport::Registry,
                "quay.io/a/b:latest",
            ),
            ("registry:quay.io/a/b", Transport::Registry, "quay.io/a/b"),
            ("oci:/tmp/x", Transport::OciDir, "/tmp/x"),
            ("oci:/tmp/x:v1", Transport::OciDir, "/tmp/x:v1"),
            (
                "oci-archive:/tmp/x.tar:t",
                Transport::OciArchive,
                "/tmp/x.tar:t",
            ),
            (
                "docker-archive:/tmp/x.tar",
                Transport::DockerArchive,
                "/tmp/x.tar",
            ),
            (
                "containers-storage:localhost/os",
                Transport::ContainerStorage,
                "localhost/os",
            ),
            ("dir:/tmp/d", Transport::Dir, "/tmp/d"),
        ];
        for (input, t, name) in cases {
            let r = ImageReference::parse(input).unwrap();
            assert_eq!((r.transport, r.name.as_str()), (*t, *name), "{input}");
        }
        assert_eq!(
            ImageReference::parse("registry:quay.io/a")
                .unwrap()
                .to_string(),
            "docker://quay.io/a"
        );
    }

    #[test]
    fn rejects_bad_references() {
        for (input, rule) in [
            ("docker:quay.io/a", "docker://"),
            ("nope:/x", "unknown transport"),
            ("oci:", "empty"),
            ("plain", "TRANSPORT:NAME"),
            ("containers-storage:[/a+/b", "closing"),
            ("containers-storage:[rel+/b]x", "absolute"),
            ("containers-storage:[/a+/b]", "names no image"),
        ] {
            let e = ImageReference::parse(input).unwrap_err();
            assert!(e.to_string().contains(rule), "{input}: {e}");
        }
    }

    #[test]
    fn parses_ostree_image_references() {
        let r = OstreeImageReference::parse("ostree-unverified-registry:quay.io/a/b:1").unwrap();
        assert_eq!(r.sigverify, SignatureSource::Unverified);
        assert_eq!(r.imgref.to_string(), "docker://quay.io/a/b:1");
        let r = OstreeImageReference::parse("ostree-remote-image:fedora:oci:/x").unwrap();
        assert_eq!(r.sigverify, SignatureSource::OstreeRemote("fedora".into()));
        assert_eq!(r.to_string(), "ostree-remote-image:fedora:oci:/x");
        let r = OstreeImageReference::parse("ostree-image-signed:docker://q/x").unwrap();
        assert_eq!(r.sigverify, SignatureSource::ContainerPolicy);
        assert_eq!(
            OstreeImageReference::parse("oci:/x").unwrap().sigverify,
            SignatureSource::Unverified
        );
        assert!(OstreeImageReference::parse("ostree-remote-image::oci:/x").is_err());
        assert!(OstreeImageReference::parse("ostree-unverified-image:nope:/x").is_err());
    }

    #[test]
    fn splits_oci_tags_and_storage_specs() {
        let r = ImageReference::parse("oci:/x/y:tag").unwrap();
        assert_eq!(r.path_and_tag(), ("/x/y", Some("tag")));
        let r = ImageReference::parse("oci:/x/y").unwrap();
        assert_eq!(r.path_and_tag(), ("/x/y", None));
        let r = ImageReference::parse("containers-storage:[overlay@/g+/r]localhost/os:1").unwrap();
        let s = r.storage_ref().unwrap();
        assert_eq!(s.image, "localhost/os:1");
        assert_eq!(
            s.store,
            Some(StoreSpec {
                driver: Some("overlay"),
                graphroot: "/g",
                runroot: Some("/r")
            })
        );
    }
}
