//! The origin file of a container deployment (REFERENCE §7). Pure.

/// The origin group and key ostree-ext, rpm-ostree and bootc use.
pub const GROUP: &str = "origin";
pub const IMAGE_KEY: &str = "container-image-reference";

/// The origin file's text for an image reference.
pub fn render(imgref: &str) -> String {
    format!("[{GROUP}]\n{IMAGE_KEY}={imgref}\n")
}

/// The image reference in an origin file's text, if any.
pub fn parse(text: &str) -> Option<String> {
    let mut in_group = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_group = l == format!("[{GROUP}]");
        } else if in_group {
            if let Some((k, v)) = l.split_once('=') {
                if k.trim() == IMAGE_KEY {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_other_groups() {
        let t = render("ostree-unverified-image:oci:/x");
        assert_eq!(parse(&t).as_deref(), Some("ostree-unverified-image:oci:/x"));
        assert_eq!(parse("[other]\ncontainer-image-reference=x\n"), None);
        assert_eq!(parse("[origin]\nrefspec=os:main\n"), None);
    }
}
