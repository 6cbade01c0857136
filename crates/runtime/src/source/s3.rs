//! S3-compatible object stores through `object_store` (its `aws-no-crypto` feature with `ring`:
//! no aws-lc build). Credentials and endpoint come from the usual `AWS_*` variables
//! (`AWS_ENDPOINT_URL` for a store other than AWS's).

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::Synced;
use super::cache::{self, Entry};

/// A client of `bucket` with the usual AWS_* settings (also used by `inferd batch`).
pub fn store(bucket: &str) -> Result<impl ObjectStore + use<>, String> {
    // A store that is down must not hold a model's reload for minutes: few, quick retries.
    let retry = object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(15),
        ..Default::default()
    };
    let client = object_store::ClientOptions::new()
        .with_connect_timeout(std::time::Duration::from_secs(5))
        .with_timeout(std::time::Duration::from_secs(60));
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry)
        .with_client_options(client);
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL_S3"))
        .ok();
    if let Some(endpoint) = endpoint {
        let http = endpoint.starts_with("http://");
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(http)
            .with_virtual_hosted_style_request(false);
    }
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        builder = builder.with_region("us-east-1");
    }
    builder
        .build()
        .map_err(|e| format!("S3 bucket '{bucket}': {e}"))
}

pub async fn sync(bucket: &str, prefix: &str, dir: &std::path::Path) -> Result<Synced, String> {
    let store = store(bucket)?;
    let root = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
    let results: Vec<object_store::Result<object_store::ObjectMeta>> =
        store.list(root.as_ref()).collect().await;
    let mut listed = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(meta) => listed.push(meta),
            // A key no path can hold ('..' and the like) refuses the listing it is in: nothing
            // is written, and the error names the key.
            Err(e) => return Err(format!("cannot list s3://{bucket}/{prefix}: {e}")),
        }
    }
    let mut manifest = cache::load(dir);
    let mut present = Vec::new();
    let mut changed = false;
    for meta in listed {
        let key = meta.location.as_ref();
        let relative = key
            .strip_prefix(prefix)
            .unwrap_or(key)
            .trim_start_matches('/')
            .to_string();
        let Some((version, path)) = cache::safe_path(&relative) else {
            if relative != "config.toml" {
                tracing::debug!(key, "source object outside <version>/ skipped");
            }
            continue;
        };
        present.push(relative.clone());
        let tag = meta
            .e_tag
            .clone()
            .unwrap_or_else(|| format!("{}:{}", meta.size, meta.last_modified));
        if manifest.files.get(&relative).is_some_and(|e| e.tag == tag) && dir.join(&path).exists() {
            continue;
        }
        let bytes = store
            .get(&meta.location)
            .await
            .map_err(|e| format!("cannot fetch s3://{bucket}/{key}: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("cannot fetch s3://{bucket}/{key}: {e}"))?;
        let sha256 = cache::write(&cache::target(dir, version, &path), &bytes)?;
        manifest.files.insert(relative, Entry { tag, sha256 });
        changed = true;
    }
    cache::promote(dir)?;
    changed |= cache::remove_missing(dir, &mut manifest, &present);
    cache::save(dir, &manifest)?;
    Ok(Synced {
        changed,
        event: None,
    })
}
