//! The MLflow Model Registry: a registered model's version, by alias (followed as it moves) or
//! by number. Only versions whose status is READY are fetched; their artifacts are downloaded
//! through the tracking server's artifact proxy (`mlflow-artifacts:`) into
//! `<cache>/<model>/<MLflow version>/`, so the MLflow version becomes inferd's. The `onnx`
//! flavor (`model.onnx`) runs on the ONNX backends, `sklearn` (`model.pkl`) on the Python
//! backend, `xgboost` saved as JSON (`model.json`) on the tree backend.

use bytes::Bytes;
use serde_json::Value;

use super::Synced;
use super::cache::{self, Entry};
use crate::http_client::{HttpClient, Method};

/// Which version of the registered model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    Alias(String),
    Version(u64),
}

/// The manifest note holding the version the cache serves.
pub const SERVED: &str = "mlflow_version";

async fn get(client: &HttpClient, path: &str) -> Result<Bytes, String> {
    let answer = client.send(Method::GET, path, &[], Bytes::new()).await?;
    if answer.status != 200 {
        let body = String::from_utf8_lossy(&answer.body);
        return Err(format!(
            "MLflow answered {} to {path}: {body}",
            answer.status
        ));
    }
    Ok(answer.body)
}

async fn get_json(client: &HttpClient, path: &str) -> Result<Value, String> {
    let body = get(client, path).await?;
    serde_json::from_slice(&body).map_err(|e| format!("MLflow's answer to {path} is not JSON: {e}"))
}

/// A query parameter's value, percent-encoded.
fn q(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every file under `path` of the artifact store, recursively: (relative path, size).
async fn list(client: &HttpClient, root: &str, under: &str) -> Result<Vec<(String, u64)>, String> {
    let mut out = Vec::new();
    let mut stack = vec![under.to_string()];
    while let Some(dir) = stack.pop() {
        let path = if dir.is_empty() {
            root.to_string()
        } else {
            format!("{root}/{dir}")
        };
        let listed = get_json(
            client,
            &format!("/api/2.0/mlflow-artifacts/artifacts?path={}", q(&path)),
        )
        .await?;
        for f in listed["files"].as_array().into_iter().flatten() {
            let name = f["path"].as_str().unwrap_or_default();
            let relative = if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            };
            if f["is_dir"].as_bool() == Some(true) {
                stack.push(relative);
            } else {
                out.push((relative, f["file_size"].as_u64().unwrap_or(0)));
            }
        }
    }
    Ok(out)
}

pub async fn sync(
    server: &str,
    name: &str,
    pick: &Pick,
    dir: &std::path::Path,
) -> Result<Synced, String> {
    let client = HttpClient::new(&format!("http://{server}"))?;
    let version = match pick {
        Pick::Alias(alias) => {
            get_json(
                &client,
                &format!(
                    "/api/2.0/mlflow/registered-models/alias?name={}&alias={}",
                    q(name),
                    q(alias)
                ),
            )
            .await?
        }
        Pick::Version(v) => {
            get_json(
                &client,
                &format!(
                    "/api/2.0/mlflow/model-versions/get?name={}&version={v}",
                    q(name)
                ),
            )
            .await?
        }
    };
    let mv = &version["model_version"];
    let number: u64 = mv["version"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("MLflow gave no version number for {name}: {version}"))?;
    let status = mv["status"].as_str().unwrap_or_default();
    let mut manifest = cache::load(dir);
    let before: Option<u64> = manifest.note.get(SERVED).and_then(|v| v.parse().ok());
    if status != "READY" {
        // Not ready yet (still registering, or failed): the cached version goes on serving.
        tracing::info!(
            model = name,
            version = number,
            status,
            "MLflow version not READY; keeping the cached one"
        );
        return Ok(Synced {
            changed: false,
            event: None,
        });
    }
    let uri = get_json(
        &client,
        &format!(
            "/api/2.0/mlflow/model-versions/get-download-uri?name={}&version={number}",
            q(name)
        ),
    )
    .await?;
    let artifacts = uri["artifact_uri"].as_str().unwrap_or_default();
    let root = artifacts.strip_prefix("mlflow-artifacts:/").ok_or_else(|| {
        format!(
            "version {number} of {name} keeps its artifacts at {artifacts}; inferd fetches them through the \
             tracking server's artifact proxy (start it with --serve-artifacts, the default)"
        )
    })?;
    let root = root.trim_matches('/');
    let files = list(&client, root, "").await?;
    let mut changed = false;
    let mut present: Vec<String> = manifest
        .files
        .keys()
        .filter(|k| !k.starts_with(&format!("{number}/")))
        .cloned()
        .collect();
    for (file, size) in files {
        let relative = format!("{number}/{file}");
        let Some((_, path)) = cache::safe_path(&relative) else {
            tracing::warn!(
                model = name,
                file,
                "artifact path refused (outside the version)"
            );
            continue;
        };
        present.push(relative.clone());
        let tag = format!("{number}:{size}");
        if manifest.files.get(&relative).is_some_and(|e| e.tag == tag) && dir.join(&path).exists() {
            continue;
        }
        let bytes = get(
            &client,
            &format!("/api/2.0/mlflow-artifacts/artifacts/{root}/{file}"),
        )
        .await?;
        let sha256 = cache::write(&cache::target(dir, number, &path), &bytes)?;
        manifest.files.insert(relative, Entry { tag, sha256 });
        changed = true;
    }
    cache::promote(dir)?;
    // Earlier versions stay cached (a rollback of the alias finds them), the last three only.
    let mut versions: Vec<u64> = present
        .iter()
        .filter_map(|k| k.split('/').next()?.parse().ok())
        .collect();
    versions.sort_unstable();
    versions.dedup();
    let keep: Vec<u64> = versions
        .iter()
        .rev()
        .take(3)
        .copied()
        .chain([number])
        .collect();
    present.retain(|k| {
        k.split('/')
            .next()
            .and_then(|v| v.parse().ok())
            .is_some_and(|v: u64| keep.contains(&v))
    });
    changed |= cache::remove_missing(dir, &mut manifest, &present);
    manifest.note.insert(SERVED.into(), number.to_string());
    cache::save(dir, &manifest)?;
    let event = match (before, pick) {
        (Some(b), Pick::Alias(alias)) if b != number => Some(format!(
            "MLflow alias {name}@{alias} moved: version {b} -> {number}"
        )),
        (None, _) => Some(format!("MLflow {name}: serving version {number}")),
        _ => None,
    };
    Ok(Synced {
        changed: changed || before != Some(number),
        event,
    })
}

/// The version an MLflow cache serves, if it has one.
pub fn served(dir: &std::path::Path) -> Option<u64> {
    cache::load(dir).note.get(SERVED)?.parse().ok()
}
