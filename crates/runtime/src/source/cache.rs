//! The local copy of a source: files written only inside the cache directory, each through a
//! temporary file renamed into place, new versions assembled aside and renamed in whole, and a
//! manifest of what was fetched (with the source's tag and a SHA-256 of the bytes) so that only
//! what changed is fetched again.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audit::sha256_hex;

const MANIFEST: &str = ".inferd-source.json";
const INCOMING: &str = ".incoming";

/// What was fetched for each relative path (`<version>/<file>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: BTreeMap<String, Entry>,
    /// Source-specific state (e.g. the MLflow version an alias pointed at).
    #[serde(default)]
    pub note: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The source's identity of the bytes (S3 ETag, MLflow size): unchanged means not fetched.
    pub tag: String,
    pub sha256: String,
}

pub fn load(dir: &Path) -> Manifest {
    std::fs::read(dir.join(MANIFEST))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn save(dir: &Path, manifest: &Manifest) -> Result<(), String> {
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(manifest).unwrap_or_default(),
    )
    .and_then(|()| std::fs::rename(&tmp, dir.join(MANIFEST)))
    .map_err(|e| format!("cannot save the cache manifest: {e}"))
}

/// A relative path from a source, checked to stay inside the cache: plain components only, the
/// first a version number. `None` for anything else (refused, never written).
pub fn safe_path(relative: &str) -> Option<(u64, PathBuf)> {
    let path = Path::new(relative);
    let mut parts = path.components();
    let version = match parts.next()? {
        Component::Normal(v) => v.to_str()?.parse::<u64>().ok().filter(|v| *v > 0)?,
        _ => return None,
    };
    if parts.clone().next().is_none()
        || !parts.all(
            |c| matches!(c, Component::Normal(n) if !n.to_string_lossy().starts_with(".inferd")),
        )
    {
        return None;
    }
    Some((version, path.to_path_buf()))
}

/// Where a file of `version` is written: inside the version's directory when the version is
/// already in place, else in the incoming area (renamed in whole by [`promote`]).
pub fn target(dir: &Path, version: u64, relative: &Path) -> PathBuf {
    if dir.join(version.to_string()).is_dir() {
        dir.join(relative)
    } else {
        dir.join(INCOMING).join(relative)
    }
}

/// Writes `bytes` at `path` through a temporary file in the same directory.
pub fn write(path: &Path, bytes: &[u8]) -> Result<String, String> {
    let parent = path
        .parent()
        .ok_or_else(|| format!("{} has no directory", path.display()))?;
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let tmp = parent.join(format!(
        ".{}.part",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(sha256_hex(bytes))
}

/// Moves complete new versions from the incoming area into place.
pub fn promote(dir: &Path) -> Result<(), String> {
    let incoming = dir.join(INCOMING);
    let Ok(entries) = std::fs::read_dir(&incoming) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let to = dir.join(entry.file_name());
        if to.exists() {
            let _ = std::fs::remove_dir_all(&to);
        }
        std::fs::rename(entry.path(), &to)
            .map_err(|e| format!("cannot put version {} in place: {e}", to.display()))?;
    }
    let _ = std::fs::remove_dir_all(&incoming);
    Ok(())
}

/// Removes cached files and versions the source no longer has.
pub fn remove_missing(dir: &Path, manifest: &mut Manifest, present: &[String]) -> bool {
    let gone: Vec<String> = manifest
        .files
        .keys()
        .filter(|k| !present.contains(k))
        .cloned()
        .collect();
    for key in &gone {
        manifest.files.remove(key);
        if let Some((_, path)) = safe_path(key) {
            let _ = std::fs::remove_file(dir.join(path));
        }
    }
    // Version directories left empty go too.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let numeric = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u64>().is_ok());
            if numeric
                && path.is_dir()
                && !manifest
                    .files
                    .keys()
                    .any(|k| k.starts_with(&format!("{}/", entry.file_name().to_string_lossy())))
            {
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }
    !gone.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_under_a_version_are_accepted() {
        assert_eq!(
            safe_path("3/model.onnx"),
            Some((3, PathBuf::from("3/model.onnx")))
        );
        assert!(safe_path("3/sub/weights.bin").is_some());
        for bad in [
            "../3/model.onnx",
            "3/../../etc/passwd",
            "/3/x",
            "x/model.onnx",
            "0/m",
            "3",
            "3/.inferd-source.json",
        ] {
            assert!(safe_path(bad).is_none(), "{bad}");
        }
    }
}
