//! Model sources beyond the repository folder: a repository entry's config.toml may say where
//! its versions come from (`source = "s3://bucket/prefix"` or
//! `"mlflow://host:port/<name>@<alias>"`). They are downloaded into a local cache
//! (`<cache>/<model>/<version>/...`), checksummed, each version renamed into place only once
//! complete, and only inside the cache; the model loads from there. When the source cannot be
//! reached, the cached versions go on serving.

mod cache;
pub mod mlflow;
pub mod s3;

use std::path::{Path, PathBuf};

/// Where a model's versions come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `s3://bucket/prefix`: `<prefix>/<version>/<files>`, as a local model directory.
    S3 { bucket: String, prefix: String },
    /// `mlflow://host:port/<name>@<alias>` or `.../<name>/<version>`.
    Mlflow {
        server: String,
        name: String,
        pick: mlflow::Pick,
    },
}

impl Source {
    pub fn parse(text: &str) -> Result<Source, String> {
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("source '{text}' names no bucket"));
            }
            return Ok(Source::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some(rest) = text.strip_prefix("mlflow://") {
            let (server, path) = rest
                .split_once('/')
                .ok_or_else(|| format!("source '{text}' names no registered model"))?;
            let pick = match path.split_once('@') {
                Some((name, alias)) if !name.is_empty() && !alias.is_empty() => {
                    (name.to_string(), mlflow::Pick::Alias(alias.to_string()))
                }
                _ => match path.rsplit_once('/') {
                    Some((name, v)) if v.parse::<u64>().is_ok() => (
                        name.to_string(),
                        mlflow::Pick::Version(v.parse().unwrap_or(0)),
                    ),
                    _ => {
                        return Err(format!(
                            "source '{text}': give <name>@<alias> or <name>/<version>"
                        ));
                    }
                },
            };
            return Ok(Source::Mlflow {
                server: server.to_string(),
                name: pick.0,
                pick: pick.1,
            });
        }
        Err(format!(
            "source '{text}' is neither s3://bucket/prefix nor mlflow://host:port/<name>@<alias>"
        ))
    }
}

/// What a sync found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Files were added, changed or removed.
    pub changed: bool,
    /// A note for the history (e.g. an MLflow alias moved), when there is one.
    pub event: Option<String>,
}

/// Brings `dir` (the model's cache) in line with `source`.
pub async fn sync(source: &Source, dir: &Path) -> Result<Synced, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the model cache {}: {e}", dir.display()))?;
    match source {
        Source::S3 { bucket, prefix } => s3::sync(bucket, prefix, dir).await,
        Source::Mlflow { server, name, pick } => mlflow::sync(server, name, pick, dir).await,
    }
}

/// The cache directory of `model` under `root`.
pub fn cache_dir(root: &Path, model: &str) -> PathBuf {
    root.join(model)
}

/// The default cache root: `$XDG_CACHE_HOME/inferd/models`, else `~/.cache/inferd/models`.
pub fn default_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("inferd/models")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(
            Source::parse("s3://models/prod/fraud/").unwrap(),
            Source::S3 {
                bucket: "models".into(),
                prefix: "prod/fraud".into()
            }
        );
        assert_eq!(
            Source::parse("mlflow://127.0.0.1:5000/fraud@champion").unwrap(),
            Source::Mlflow {
                server: "127.0.0.1:5000".into(),
                name: "fraud".into(),
                pick: mlflow::Pick::Alias("champion".into())
            }
        );
        assert!(matches!(
            Source::parse("mlflow://h:1/fraud/3").unwrap(),
            Source::Mlflow {
                pick: mlflow::Pick::Version(3),
                ..
            }
        ));
        assert!(Source::parse("mlflow://h:1/fraud").is_err());
        assert!(Source::parse("ftp://x").is_err());
    }
}
