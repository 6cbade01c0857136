//! Forwarding audit records to an HTTP endpoint as CloudEvents (binary content mode, KServe's
//! `ce-*` names, so consumers of KServe's payload logger work), at least once. The sink reads
//! the segment files, never the in-memory queue: the local log is the source of truth, a stalled
//! endpoint costs no memory, and after a restart the sink resumes at its cursor (`sink.cursor`
//! in the audit directory: segment and offset of the first record not yet acknowledged).

use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;

use super::segment::segments;
use crate::http_client::{HttpClient, Method};

/// What the sink did (exported as metrics).
#[derive(Default)]
pub struct SinkStats {
    pub sent: AtomicU64,
    pub failures: AtomicU64,
    /// Records removed by retention before they could be sent.
    pub skipped: AtomicU64,
}

pub struct Sink {
    dir: PathBuf,
    client: HttpClient,
    path: String,
    source: String,
    pub stats: Arc<SinkStats>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    segment: String,
    offset: u64,
}

fn cursor_path(dir: &Path) -> PathBuf {
    dir.join("sink.cursor")
}

fn read_cursor(dir: &Path) -> Option<Cursor> {
    let text = std::fs::read_to_string(cursor_path(dir)).ok()?;
    let (segment, offset) = text.trim().rsplit_once(' ')?;
    Some(Cursor {
        segment: segment.to_string(),
        offset: offset.parse().ok()?,
    })
}

fn write_cursor(dir: &Path, c: &Cursor) -> std::io::Result<()> {
    let tmp = dir.join("sink.cursor.tmp");
    std::fs::write(&tmp, format!("{} {}\n", c.segment, c.offset))?;
    std::fs::rename(tmp, cursor_path(dir))
}

impl Sink {
    /// A sink posting to `url` (`http://host:port/path`); `source` names this server in events.
    pub fn new(dir: &Path, url: &str, source: &str) -> Result<Sink, String> {
        let client = HttpClient::new(url).map_err(|e| format!("--audit-sink-url {e}"))?;
        let path = url
            .strip_prefix("http://")
            .and_then(|r| r.find('/').map(|i| r[i..].to_string()))
            .unwrap_or_else(|| "/".into());
        Ok(Sink {
            dir: dir.to_path_buf(),
            client,
            path,
            source: source.to_string(),
            stats: Arc::default(),
        })
    }

    /// Forwards records until the process ends; waits and retries while the endpoint fails.
    pub async fn run(self) {
        let mut cursor = read_cursor(&self.dir);
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.forward(&mut cursor).await {
                Ok(0) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    backoff = Duration::from_millis(100);
                }
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    self.stats.failures.fetch_add(1, Relaxed);
                    tracing::warn!(
                        sink = %self.client.authority(),
                        retry_in_ms = backoff.as_millis() as u64,
                        "audit sink: {e}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Sends what follows the cursor, moving it past each acknowledged record; the number sent.
    async fn forward(&self, cursor: &mut Option<Cursor>) -> Result<u64, String> {
        let all = segments(&self.dir).map_err(|e| e.to_string())?;
        let names: Vec<String> = all
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        let (start, mut offset) = match cursor.as_ref() {
            None => (0, 0),
            Some(c) => match names.iter().position(|n| *n == c.segment) {
                Some(i) => (i, c.offset),
                None => {
                    // Its segment is gone (retention): go on with the oldest one left.
                    let next = names
                        .iter()
                        .position(|n| *n > c.segment)
                        .unwrap_or(names.len());
                    tracing::error!(segment = %c.segment, "audit sink: records removed by retention before they were sent");
                    self.stats.skipped.fetch_add(1, Relaxed);
                    (next, 0)
                }
            },
        };
        let mut sent = 0;
        for (i, segment) in all.iter().enumerate().skip(start) {
            if i > start {
                offset = 0;
            }
            let mut file = std::fs::File::open(segment).map_err(|e| e.to_string())?;
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| e.to_string())?;
            let mut reader = std::io::BufReader::new(file);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| e.to_string())?;
                // Only whole lines: the writer may be in the middle of one.
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                self.post(&line[..n - 1]).await?;
                offset += n as u64;
                sent += 1;
                self.stats.sent.fetch_add(1, Relaxed);
                let c = Cursor {
                    segment: names[i].clone(),
                    offset,
                };
                // The cursor on disk follows every record: a restart resends at most one.
                write_cursor(&self.dir, &c)
                    .map_err(|e| format!("cannot save the sink cursor: {e}"))?;
                *cursor = Some(c);
            }
            let last = i + 1 == all.len();
            if !last && cursor.as_ref().is_some_and(|c| c.segment == names[i]) {
                // A closed segment done: on to the next one.
                let c = Cursor {
                    segment: names[i + 1].clone(),
                    offset: 0,
                };
                write_cursor(&self.dir, &c).map_err(|e| e.to_string())?;
                *cursor = Some(c);
            }
        }
        Ok(sent)
    }

    async fn post(&self, record: &[u8]) -> Result<(), String> {
        let r: serde_json::Value = serde_json::from_slice(record).map_err(|e| e.to_string())?;
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        let kind = if r["status"]["code"] == "OK" {
            "response"
        } else {
            "error"
        };
        let headers = [
            ("content-type", "application/json".to_string()),
            ("ce-specversion", "1.0".to_string()),
            ("ce-id", format!("{}-{}", s("id"), r["seq"])),
            ("ce-type", format!("org.kubeflow.serving.inference.{kind}")),
            ("ce-source", self.source.clone()),
            ("ce-time", s("completed_at")),
            ("ce-inferenceservicename", s("model_name")),
            ("ce-endpoint", s("model_version")),
            ("ce-requestid", s("id")),
        ];
        let answer = self
            .client
            .send(
                Method::POST,
                &self.path,
                &headers,
                Bytes::copy_from_slice(record),
            )
            .await?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(format!("the endpoint answered {}", answer.status))
        }
    }
}
