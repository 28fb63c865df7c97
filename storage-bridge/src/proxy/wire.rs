//! The proxy's wire format, apart from any I/O: one JSON request per seqpacket message
//! (`{"method": M, "args": [...]}`), one JSON reply (`{"success", "value", "pipeid", "error"}`),
//! and the protocol version check. Pure and table-tested.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// skopeo's limit on one request packet (`maxMsgSize` in `cmd/skopeo/proxy.go`); we take
/// replies of the same size.
pub(crate) const MAX_MSG: usize = 32 * 1024;

/// The oldest protocol this client speaks: 0.2.3 added `GetFullConfig` (Debian 12's skopeo 1.9.3).
pub(crate) const MIN_PROTOCOL: Version = Version(0, 2, 3);

/// The protocol that added `OpenImageOptional`.
pub(crate) const OPEN_OPTIONAL_PROTOCOL: Version = Version(0, 2, 4);

/// Largest integer skopeo accepts as a number (JavaScript's `MAX_SAFE_INTEGER`).
pub(crate) const MAX_JSON_INT: u64 = (1 << 53) - 1;

#[derive(Serialize)]
struct Request<'a> {
    method: &'a str,
    args: &'a [Value],
}

/// Serialize one request, refusing what skopeo would drop as too large.
pub(crate) fn encode_request(method: &str, args: &[Value]) -> Result<Vec<u8>> {
    let buf = serde_json::to_vec(&Request { method, args })
        .with_context(|| format!("encoding the {method} request"))?;
    if buf.len() > MAX_MSG {
        bail!(
            "the {method} request is {} bytes, over the proxy's {MAX_MSG}-byte message limit",
            buf.len()
        );
    }
    Ok(buf)
}

/// One reply as sent by skopeo.
#[derive(Debug, Deserialize, PartialEq)]
pub(crate) struct Reply {
    pub success: bool,
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub pipeid: u32,
    #[serde(default)]
    pub error: String,
}

/// Parse a reply packet; a reply that is not the protocol's JSON is an error that shows it.
pub(crate) fn parse_reply(buf: &[u8]) -> Result<Reply> {
    serde_json::from_slice(buf).with_context(|| {
        let shown = String::from_utf8_lossy(&buf[..buf.len().min(200)]).into_owned();
        format!("malformed reply from the proxy: {shown:?}")
    })
}

/// A reply value that must be a non-negative integer (image ids, sizes). skopeo's encoder
/// writes Go integers; a float with no fraction is accepted too.
pub(crate) fn value_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= MAX_JSON_INT as f64)
            .map(|f| f as u64)
    })
}

/// A blob size as the proxy reports it: `Some(n)`, or `None` where the source does not know
/// (-1).
pub(crate) fn value_size(v: &Value) -> Result<Option<u64>> {
    if let Some(n) = value_u64(v) {
        return Ok(Some(n));
    }
    match v.as_i64() {
        Some(-1) => Ok(None),
        _ => bail!("the proxy reported a blob size that is not a size: {v}"),
    }
}

/// A protocol version `MAJOR.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version(pub u32, pub u32, pub u32);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Parse `0.2.3`; anything else is an error naming the text.
pub(crate) fn parse_version(s: &str) -> Result<Version> {
    let parts: Vec<&str> = s.split('.').collect();
    let n = |p: &str| p.parse::<u32>().ok();
    match parts.as_slice() {
        [a, b, c] => match (n(a), n(b), n(c)) {
            (Some(a), Some(b), Some(c)) => Ok(Version(a, b, c)),
            _ => bail!("the proxy's protocol version {s:?} is not MAJOR.MINOR.PATCH"),
        },
        _ => bail!("the proxy's protocol version {s:?} is not MAJOR.MINOR.PATCH"),
    }
}

/// The version from the `Initialize` reply, checked against [`MIN_PROTOCOL`] (same major).
pub(crate) fn check_protocol(value: &Value) -> Result<Version> {
    let s = value
        .as_str()
        .with_context(|| format!("Initialize returned {value}, not a version string"))?;
    let v = parse_version(s)?;
    if v.0 != MIN_PROTOCOL.0 || v < MIN_PROTOCOL {
        bail!("skopeo's image proxy speaks protocol {v}; this client needs {MIN_PROTOCOL} or a later 0.x (skopeo 1.9 or newer)");
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_one_json_object() {
        let b = encode_request("GetBlob", &[json!(1), json!("sha256:ab"), json!(42)]).unwrap();
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"method":"GetBlob","args":[1,"sha256:ab",42]}"#
        );
        assert_eq!(
            std::str::from_utf8(&encode_request("Initialize", &[]).unwrap()).unwrap(),
            r#"{"method":"Initialize","args":[]}"#
        );
        let big = "x".repeat(MAX_MSG);
        let e = encode_request("OpenImage", &[json!(big)]).unwrap_err();
        assert!(e.to_string().contains("message limit"), "{e}");
    }

    #[test]
    fn replies_parse_with_defaults() {
        let cases: &[(&str, Reply)] = &[
            (
                r#"{"success":true,"value":"0.2.3","pipeid":0,"error":""}"#,
                Reply {
                    success: true,
                    value: json!("0.2.3"),
                    pipeid: 0,
                    error: String::new(),
                },
            ),
            (
                r#"{"success":true,"value":"sha256:ab","pipeid":7}"#,
                Reply {
                    success: true,
                    value: json!("sha256:ab"),
                    pipeid: 7,
                    error: String::new(),
                },
            ),
            (
                r#"{"success":false,"value":null,"pipeid":0,"error":"no image 3"}"#,
                Reply {
                    success: false,
                    value: Value::Null,
                    pipeid: 0,
                    error: "no image 3".into(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_reply(text.as_bytes()).unwrap(), want, "{text}");
        }
        for bad in [
            &b"not json"[..],
            br#"{"value":1}"#,
            br#"{"success":true,"pipeid":-1}"#,
        ] {
            let e = parse_reply(bad).unwrap_err();
            assert!(e.to_string().contains("malformed reply"), "{e}");
        }
    }

    #[test]
    fn values_and_sizes() {
        assert_eq!(value_u64(&json!(5)), Some(5));
        assert_eq!(value_u64(&json!(5.0)), Some(5));
        assert_eq!(value_u64(&json!(5.5)), None);
        assert_eq!(value_u64(&json!(-1)), None);
        assert_eq!(value_u64(&json!("5")), None);
        assert_eq!(value_size(&json!(1234)).unwrap(), Some(1234));
        assert_eq!(value_size(&json!(-1)).unwrap(), None);
        assert!(value_size(&json!(-2)).is_err());
        assert!(value_size(&Value::Null).is_err());
    }

    #[test]
    fn protocol_versions() {
        assert_eq!(check_protocol(&json!("0.2.3")).unwrap(), Version(0, 2, 3));
        assert_eq!(check_protocol(&json!("0.2.7")).unwrap(), Version(0, 2, 7));
        assert_eq!(check_protocol(&json!("0.3.0")).unwrap(), Version(0, 3, 0));
        for (bad, msg) in [
            (json!("0.2.2"), "needs 0.2.3"),
            (json!("1.0.0"), "needs 0.2.3"),
            (json!("0.2"), "MAJOR.MINOR.PATCH"),
            (json!("0.2.x"), "MAJOR.MINOR.PATCH"),
            (json!(3), "not a version string"),
        ] {
            let e = check_protocol(&bad).unwrap_err();
            assert!(e.to_string().contains(msg), "{bad}: {e}");
        }
        assert!(Version(0, 2, 3) < OPEN_OPTIONAL_PROTOCOL);
    }
}
