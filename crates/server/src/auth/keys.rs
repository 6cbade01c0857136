//! The key file: API keys (their SHA-256, never the secret), client-certificate subjects, their
//! scopes, expiry and request rate. Re-read when it changes.
//!
//! ```toml
//! [[keys]]
//! id = "ci"
//! sha256 = "3b0c…"                  # of the whole secret `ik.ci.<random>`
//! scopes = ["inference:iris*", "metadata"]
//! expires = "2027-01-01T00:00:00Z"  # optional
//! rate = 50                         # requests per second, optional
//! burst = 100                       # optional, default max(rate, 1)
//!
//! [[subjects]]                      # mTLS: a client certificate's subject as a principal
//! subject = "CN=batch-job,O=acme"
//! id = "batch-job"                  # optional, default the subject
//! scopes = ["inference"]
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::quota::Rate;
use super::scope::Scopes;

/// Every API key starts with this, then the key id, a dot and the random part.
pub const KEY_PREFIX: &str = "ik.";

#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KeyFileText {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyText>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<SubjectText>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyText {
    pub id: String,
    pub sha256: String,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<f64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectText {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<f64>,
}

/// Who a credential stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub id: String,
    pub scopes: Scopes,
    pub rate: Option<Rate>,
}

#[derive(Debug)]
struct Key {
    sha256: [u8; 32],
    expires: Option<SystemTime>,
    identity: Identity,
}

/// A parsed key file.
#[derive(Debug, Default)]
pub struct KeyFile {
    keys: HashMap<String, Key>,
    subjects: HashMap<String, Identity>,
}

/// Why a presented key is refused (401). The text never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("malformed API key (expected ik.<id>.<secret>)")]
    Malformed,
    #[error("unknown or wrong API key")]
    Wrong,
    #[error("API key '{0}' expired at {1}")]
    Expired(String, String),
}

pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

fn rate(rate: Option<f64>, burst: Option<f64>, what: &str) -> Result<Option<Rate>, String> {
    match (rate, burst) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(format!("{what}: burst without rate")),
        (Some(r), b) => Rate::new(r, b)
            .map(Some)
            .map_err(|e| format!("{what}: {e}")),
    }
}

impl KeyFile {
    pub fn parse(text: &str) -> Result<KeyFile, String> {
        let file: KeyFileText = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut out = KeyFile::default();
        for k in file.keys {
            let what = format!("key '{}'", k.id);
            if !valid_id(&k.id) {
                return Err(format!("{what}: ids are 1-64 of A-Z a-z 0-9 - _"));
            }
            let sha256 = decode_hex32(&k.sha256)
                .ok_or_else(|| format!("{what}: sha256 must be 64 hex digits"))?;
            let expires = match &k.expires {
                None => None,
                Some(t) => Some(
                    inferd_runtime::parse_rfc3339(t)
                        .ok_or_else(|| format!("{what}: expires '{t}' is not an RFC 3339 time"))?,
                ),
            };
            let scopes = Scopes::parse(k.scopes.iter().map(String::as_str))
                .map_err(|e| format!("{what}: {e}"))?;
            let identity = Identity {
                id: k.id.clone(),
                scopes,
                rate: rate(k.rate, k.burst, &what)?,
            };
            let key = Key {
                sha256,
                expires,
                identity,
            };
            if out.keys.insert(k.id.clone(), key).is_some() {
                return Err(format!("{what} is listed twice"));
            }
        }
        for s in file.subjects {
            let what = format!("subject '{}'", s.subject);
            let scopes = Scopes::parse(s.scopes.iter().map(String::as_str))
                .map_err(|e| format!("{what}: {e}"))?;
            let identity = Identity {
                id: s.id.clone().unwrap_or_else(|| s.subject.clone()),
                scopes,
                rate: rate(s.rate, s.burst, &what)?,
            };
            out.subjects.insert(s.subject, identity);
        }
        Ok(out)
    }

    pub fn read(path: &Path) -> Result<KeyFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
        KeyFile::parse(&text).map_err(|e| format!("key file {}: {e}", path.display()))
    }

    pub fn entries(&self) -> usize {
        self.keys.len() + self.subjects.len()
    }

    /// Checks a presented API key. Every key costs the same hash and a constant-time compare,
    /// known id or not.
    pub fn check(&self, secret: &str, now: SystemTime) -> Result<&Identity, KeyError> {
        let rest = secret.strip_prefix(KEY_PREFIX).ok_or(KeyError::Malformed)?;
        let (id, random) = rest.split_once('.').ok_or(KeyError::Malformed)?;
        if random.is_empty() {
            return Err(KeyError::Malformed);
        }
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let key = self.keys.get(id);
        let expected = key.map_or([0u8; 32], |k| k.sha256);
        let same: bool = digest.ct_eq(&expected).into();
        let key = match key {
            Some(k) if same => k,
            _ => return Err(KeyError::Wrong),
        };
        if let Some(at) = key.expires
            && at <= now
        {
            return Err(KeyError::Expired(
                id.to_string(),
                inferd_runtime::rfc3339(at),
            ));
        }
        Ok(&key.identity)
    }

    /// The principal a verified client certificate's subject stands for, when listed.
    pub fn subject(&self, subject: &str) -> Option<&Identity> {
        self.subjects.get(subject)
    }
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The SHA-256 of a secret as the key file stores it.
pub fn secret_sha256(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn file(expires: &str) -> KeyFile {
        let text = format!(
            "[[keys]]\nid = \"ci\"\nsha256 = \"{}\"\nscopes = [\"inference:iris*\"]\n{expires}\n",
            secret_sha256("ik.ci.s3cret")
        );
        KeyFile::parse(&text).unwrap()
    }

    #[test]
    fn keys_check_by_hash_and_expire() {
        let now = SystemTime::now();
        let f = file("");
        assert_eq!(f.check("ik.ci.s3cret", now).unwrap().id, "ci");
        assert_eq!(f.check("ik.ci.s3creT", now), Err(KeyError::Wrong));
        assert_eq!(f.check("ik.other.s3cret", now), Err(KeyError::Wrong));
        assert_eq!(f.check("s3cret", now), Err(KeyError::Malformed));
        assert_eq!(f.check("ik.ci.", now), Err(KeyError::Malformed));
        let f = file("expires = \"2026-01-01T00:00:00Z\"");
        let err = f.check("ik.ci.s3cret", now).unwrap_err();
        assert!(matches!(err, KeyError::Expired(..)) && !err.to_string().contains("s3cret"));
        let later = inferd_runtime::parse_rfc3339("2025-12-31T00:00:00Z").unwrap();
        assert!(
            f.check("ik.ci.s3cret", later - Duration::from_secs(1))
                .is_ok()
        );
    }

    #[test]
    fn bad_files_say_which_entry() {
        for (text, says) in [
            (
                "[[keys]]\nid = \"a b\"\nsha256 = \"00\"\nscopes = []\n",
                "ids are",
            ),
            (
                "[[keys]]\nid = \"a\"\nsha256 = \"00\"\nscopes = []\n",
                "64 hex",
            ),
            (
                "[[keys]]\nid = \"a\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nscopes = [\"nope\"]\n",
                "unknown scope",
            ),
            ("[[keys]]\nid = \"a\"\nsecret = \"x\"\n", "unknown field"),
        ] {
            let err = KeyFile::parse(text).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}
