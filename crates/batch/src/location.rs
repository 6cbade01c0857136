//! Local paths and `s3://bucket/key` URLs: inputs are listed and fetched into a staging
//! directory, outputs written there and uploaded when the job ends.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::{BatchError, Format};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 { bucket: String, key: String },
}

impl Location {
    pub fn parse(text: &str) -> Result<Location, String> {
        match text.strip_prefix("s3://") {
            None => Ok(Location::Local(PathBuf::from(text))),
            Some(rest) => {
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(format!("'{text}' names no bucket (s3://bucket/key)"));
                }
                Ok(Location::S3 {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                })
            }
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, Location::S3 { .. })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// Where remote files of a job are kept locally: the same place for the same URL, so a
/// resumed job finds its partial output again.
pub fn staging(url: &str) -> PathBuf {
    let digest = Sha256::digest(url.as_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    inferd_runtime::source::default_cache()
        .with_file_name("batch")
        .join(name)
}

fn has_extension(name: &str, format: Option<Format>) -> bool {
    match format {
        Some(f) => f
            .extensions()
            .iter()
            .any(|e| name.to_ascii_lowercase().ends_with(e)),
        None => Format::of_path(name).is_some(),
    }
}

/// The files of `input`, sorted: the file itself, or every file of a directory (or S3
/// prefix) in `format` (by extension). S3 objects are downloaded first.
pub async fn input_files(
    input: &Location,
    format: Option<Format>,
) -> Result<Vec<(String, PathBuf)>, BatchError> {
    match input {
        Location::Local(path) if path.is_dir() => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| BatchError::io(path.display(), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .filter(|p| has_extension(&p.to_string_lossy(), format))
                .collect();
            files.sort();
            Ok(files
                .into_iter()
                .map(|p| (p.display().to_string(), p))
                .collect())
        }
        Location::Local(path) => {
            if !path.is_file() {
                return Err(BatchError::io(path.display(), "no such file or directory"));
            }
            Ok(vec![(path.display().to_string(), path.clone())])
        }
        Location::S3 { bucket, key } => {
            let store = inferd_runtime::source::s3::store(bucket).map_err(BatchError::Usage)?;
            let url = input.to_string();
            let mut keys = Vec::new();
            let mut listing = store.list(Some(&ObjectPath::from(key.trim_end_matches('/'))));
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| BatchError::io(&url, e))?;
                let name = meta.location.to_string();
                if name == *key || has_extension(&name, format) {
                    keys.push(name);
                }
            }
            if keys.iter().any(|k| k == key) {
                keys = vec![key.clone()];
            }
            keys.sort();
            if keys.is_empty() {
                return Err(BatchError::io(&url, "no matching objects"));
            }
            let dir = staging(&url).join("input");
            let mut out = Vec::new();
            for k in keys {
                let local = dir.join(k.replace('/', "%2F"));
                fetch(&store, &k, &local)
                    .await
                    .map_err(|e| BatchError::io(format!("s3://{bucket}/{k}"), e))?;
                out.push((format!("s3://{bucket}/{k}"), local));
            }
            Ok(out)
        }
    }
}

async fn fetch(store: &impl ObjectStore, key: &str, local: &Path) -> Result<(), String> {
    let path = ObjectPath::from(key);
    let meta = store.head(&path).await.map_err(|e| e.to_string())?;
    if std::fs::metadata(local).is_ok_and(|m| m.len() == meta.size) {
        return Ok(()); // fetched by an earlier run of the job
    }
    if let Some(dir) = local.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let partial = local.with_extension("partial");
    let mut file = tokio::fs::File::create(&partial)
        .await
        .map_err(|e| e.to_string())?;
    let mut body = store
        .get(&path)
        .await
        .map_err(|e| e.to_string())?
        .into_stream();
    while let Some(chunk) = body.next().await {
        file.write_all(&chunk.map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?;
    }
    file.flush().await.map_err(|e| e.to_string())?;
    std::fs::rename(&partial, local).map_err(|e| e.to_string())
}

/// Where an output is written locally: the path itself, or a staging file for S3.
pub fn local_output(output: &Location) -> PathBuf {
    match output {
        Location::Local(p) => p.clone(),
        Location::S3 { key, .. } => {
            let name = key.rsplit('/').next().unwrap_or("output");
            staging(&output.to_string()).join(name)
        }
    }
}

/// Uploads a finished output file to its S3 location (in parts: any size).
pub async fn upload(local: &Path, output: &Location) -> Result<(), BatchError> {
    let Location::S3 { bucket, key } = output else {
        return Ok(());
    };
    let url = output.to_string();
    let store = inferd_runtime::source::s3::store(bucket).map_err(BatchError::Usage)?;
    let size = std::fs::metadata(local)
        .map_err(|e| BatchError::io(local.display(), e))?
        .len();
    let path = ObjectPath::from(key.as_str());
    const PART: usize = 8 << 20;
    if size as usize <= PART {
        let bytes = std::fs::read(local).map_err(|e| BatchError::io(local.display(), e))?;
        store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| BatchError::io(&url, e))?;
        return Ok(());
    }
    let mut upload = store
        .put_multipart(&path)
        .await
        .map_err(|e| BatchError::io(&url, e))?;
    let mut file = std::fs::File::open(local).map_err(|e| BatchError::io(local.display(), e))?;
    loop {
        let mut part = vec![0u8; PART];
        let n = read_full(&mut file, &mut part).map_err(|e| BatchError::io(local.display(), e))?;
        if n == 0 {
            break;
        }
        part.truncate(n);
        upload
            .put_part(PutPayload::from(part))
            .await
            .map_err(|e| BatchError::io(&url, e))?;
    }
    upload
        .complete()
        .await
        .map_err(|e| BatchError::io(&url, e))?;
    Ok(())
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut at = 0;
    while at < buf.len() {
        match file.read(&mut buf[at..])? {
            0 => break,
            n => at += n,
        }
    }
    Ok(at)
}
