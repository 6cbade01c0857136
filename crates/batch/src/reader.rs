//! Reads the input files on a thread of its own, in order: rows of this shard, past the ones
//! a resumed job already wrote, in chunks of one request each.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value as Json};
use tokio::sync::mpsc;

use crate::value::Value;
use crate::{BatchError, Format, Shard};

/// A row's fields as read.
#[derive(Debug)]
pub enum Fields {
    Csv(csv::ByteRecord),
    Json(Map<String, Json>),
    /// A Parquet row's values, in the file's column order.
    Values(Vec<Value>),
    /// A whole V2 inference request (a line as `mlserver infer` takes).
    V2(Json),
    /// The row could not be read; why.
    Bad(String),
}

#[derive(Debug)]
pub struct Row {
    /// Position among all rows of all input files, from 0.
    pub index: u64,
    pub id: Option<String>,
    pub fields: Fields,
}

/// Rows rather than whole files go to shards in blocks of this many.
pub const SHARD_BLOCK: u64 = 1024;

pub struct ReadSettings {
    pub files: Vec<(String, PathBuf)>,
    pub format: Format,
    pub id_column: Option<String>,
    pub shard: Shard,
    /// Rows of this shard already done (a resumed job).
    pub skip: u64,
    pub rows_per_chunk: usize,
    /// Bytes read so far, for progress.
    pub bytes: Arc<AtomicU64>,
}

/// The header of CSV inputs; every file must have the same one.
pub fn csv_header(files: &[(String, PathBuf)]) -> Result<Vec<String>, BatchError> {
    let mut header: Option<(String, Vec<String>)> = None;
    for (name, path) in files {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(path)
            .map_err(|e| BatchError::io(name, e))?;
        let this: Vec<String> = reader
            .headers()
            .map_err(|e| BatchError::io(name, e))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        match &header {
            None => header = Some((name.clone(), this)),
            Some((first, h)) if *h != this => {
                return Err(BatchError::Usage(format!(
                    "{name} has another header than {first}: {this:?} vs {h:?}"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(header.map(|(_, h)| h).unwrap_or_default())
}

/// Chunks go to the job in bundles of at least this many rows (or [`BUNDLE_CHUNKS`] chunks):
/// a message per chunk woke the job and this thread for every chunk, each time taking a core
/// from a model thread (a third of a Parquet job's context switches).
const BUNDLE_ROWS: usize = 1024;
/// At most this many chunks to a bundle, as a V2 request line is a chunk of its own rows.
const BUNDLE_CHUNKS: usize = 16;

/// Chunks of rows, each one request.
pub type Bundle = Vec<Vec<Row>>;

struct Emitter {
    settings: ReadSettings,
    tx: mpsc::Sender<Bundle>,
    index: u64,
    mine: u64,
    chunk: Vec<Row>,
    bundle: Bundle,
    bundle_rows: usize,
}

impl Emitter {
    /// Takes the next row of the input; false when the job went away.
    fn row(&mut self, id: Option<String>, fields: Fields) -> bool {
        let index = self.index;
        self.index += 1;
        let shard = self.settings.shard;
        if (index / SHARD_BLOCK) % shard.count != shard.index {
            return true;
        }
        self.mine += 1;
        if self.mine <= self.settings.skip {
            return true;
        }
        let alone = matches!(fields, Fields::V2(_));
        if alone {
            self.end_chunk();
        }
        self.chunk.push(Row { index, id, fields });
        if alone || self.chunk.len() >= self.settings.rows_per_chunk {
            self.end_chunk();
            if self.bundle_rows >= BUNDLE_ROWS || self.bundle.len() >= BUNDLE_CHUNKS {
                return self.send();
            }
        }
        true
    }

    fn end_chunk(&mut self) {
        if !self.chunk.is_empty() {
            self.bundle_rows += self.chunk.len();
            self.bundle.push(std::mem::take(&mut self.chunk));
        }
    }

    /// Sends the bundle; false when the job went away.
    fn send(&mut self) -> bool {
        self.bundle_rows = 0;
        let bundle = std::mem::take(&mut self.bundle);
        bundle.is_empty() || self.tx.blocking_send(bundle).is_ok()
    }

    /// Sends what is left: the last chunk, and the bundle it ends.
    fn flush(&mut self) -> bool {
        self.end_chunk();
        self.send()
    }
}

/// Reads everything, sending chunks until the input ends (or the receiver is dropped).
pub fn read(settings: ReadSettings, tx: mpsc::Sender<Bundle>) -> Result<(), BatchError> {
    let files = settings.files.clone();
    let (format, id_column, bytes) = (
        settings.format,
        settings.id_column.clone(),
        Arc::clone(&settings.bytes),
    );
    let mut out = Emitter {
        settings,
        tx,
        index: 0,
        mine: 0,
        chunk: Vec::new(),
        bundle: Vec::new(),
        bundle_rows: 0,
    };
    let mut done_bytes = 0u64;
    for (name, path) in &files {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let go_on = match format {
            Format::Csv => read_csv(
                name,
                path,
                id_column.as_deref(),
                &mut out,
                &bytes,
                done_bytes,
            )?,
            Format::Jsonl => read_jsonl(
                name,
                path,
                id_column.as_deref(),
                &mut out,
                &bytes,
                done_bytes,
            )?,
            Format::Parquet => crate::parquet_read::read(
                name,
                path,
                id_column.as_deref(),
                &bytes,
                done_bytes,
                |id, values| out.row(id, Fields::Values(values)),
            )?,
        };
        done_bytes += size;
        bytes.store(done_bytes, Ordering::Relaxed);
        if !go_on {
            return Ok(());
        }
    }
    out.flush();
    Ok(())
}

fn read_csv(
    name: &str,
    path: &PathBuf,
    id_column: Option<&str>,
    out: &mut Emitter,
    bytes: &AtomicU64,
    before: u64,
) -> Result<bool, BatchError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        // Reads of 1 MiB, as for JSON Lines: with the default 8 KiB, the kernel's copies
        // took ~8% of a CSV job's CPU beside the model's threads.
        .buffer_capacity(1 << 20)
        .from_path(path)
        .map_err(|e| BatchError::io(name, e))?;
    let header = reader
        .headers()
        .map_err(|e| BatchError::io(name, e))?
        .clone();
    let id_at = id_column.and_then(|c| header.iter().position(|h| h.trim() == c));
    let mut record = csv::ByteRecord::new();
    loop {
        let fields = match reader.read_byte_record(&mut record) {
            Ok(false) => return Ok(true),
            Ok(true) if record.len() != header.len() => Fields::Bad(format!(
                "{name} line {}: {} fields, the header has {}",
                record.position().map_or(0, |p| p.line()),
                record.len(),
                header.len()
            )),
            Ok(true) => Fields::Csv(record.clone()),
            Err(e) => Fields::Bad(format!("{name}: {e}")),
        };
        bytes.store(before + reader.position().byte(), Ordering::Relaxed);
        // A row with too few or many fields still names itself when it can.
        let id = match (&fields, id_at) {
            (Fields::Csv(_) | Fields::Bad(_), Some(at)) => record
                .get(at)
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            _ => None,
        };
        if !out.row(id, fields) {
            return Ok(false);
        }
    }
}

fn read_jsonl(
    name: &str,
    path: &PathBuf,
    id_column: Option<&str>,
    out: &mut Emitter,
    bytes: &AtomicU64,
    before: u64,
) -> Result<bool, BatchError> {
    let file = std::fs::File::open(path).map_err(|e| BatchError::io(name, e))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let (mut line, mut at, mut number) = (String::new(), 0u64, 0u64);
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| BatchError::io(name, e))?;
        if n == 0 {
            return Ok(true);
        }
        at += n as u64;
        number += 1;
        bytes.store(before + at, Ordering::Relaxed);
        if line.trim().is_empty() {
            continue;
        }
        let (id, fields) = match serde_json::from_str::<Json>(&line) {
            Ok(Json::Object(map)) => {
                let id = id_column
                    .and_then(|c| map.get(c))
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
                let id = id.or_else(|| {
                    map.get("id")
                        .and_then(Json::as_str)
                        .filter(|_| map.contains_key("inputs"))
                        .map(str::to_string)
                });
                if map.get("inputs").is_some_and(Json::is_array) {
                    (id, Fields::V2(Json::Object(map)))
                } else {
                    (id, Fields::Json(map))
                }
            }
            Ok(_) => (
                None,
                Fields::Bad(format!("{name} line {number}: not a JSON object")),
            ),
            Err(e) => (None, Fields::Bad(format!("{name} line {number}: {e}"))),
        };
        if !out.row(id, fields) {
            return Ok(false);
        }
    }
}
