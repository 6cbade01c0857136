//! A batch job: read → encode → score (several chunks in flight) → write in input order, with
//! a checkpoint after every written stretch.

use std::collections::VecDeque;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::checkpoint::{self, Checkpoint};
use crate::encode::{Mapping, RowKey};
use crate::location::{self, Location};
use crate::model::Layout;
use crate::reader::{self, ReadSettings, Row};
use crate::{BatchError, Format, Scorer, output};

/// `--shard I/N`: this job takes row blocks `b` with `b % N == I`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn parse(text: &str) -> Result<Shard, String> {
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("--shard '{text}': expected I/N, e.g. 0/4"))?;
        let (index, count): (u64, u64) = match (i.trim().parse(), n.trim().parse()) {
            (Ok(i), Ok(n)) => (i, n),
            _ => return Err(format!("--shard '{text}': I and N must be integers")),
        };
        if count == 0 || index >= count {
            return Err(format!("--shard '{text}': needs 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

pub struct Job {
    pub inputs: Vec<Location>,
    pub input_format: Option<Format>,
    pub output: Location,
    pub output_format: Option<Format>,
    /// Default: the output's path + `.errors.jsonl`.
    pub errors: Option<PathBuf>,
    pub columns: Option<Vec<String>>,
    pub id_column: Option<String>,
    pub batch_size: Option<usize>,
    pub concurrency: usize,
    pub resume: bool,
    pub max_errors: Option<u64>,
    pub shard: Shard,
    /// What the model is, as asked (`iris@prod`): part of the job's identity for `--resume`.
    pub model: String,
}

/// How far a job is, for a progress bar or periodic lines.
pub trait Progress: Send + Sync {
    fn update(&self, rows: u64, errors: u64, bytes: u64, total_bytes: u64);
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub model: String,
    pub versions: Vec<String>,
    pub rows: u64,
    pub scored: u64,
    pub errors: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    pub resumed_at: u64,
    pub shard: String,
    pub output: String,
    pub errors_file: String,
}

struct Done {
    text: Vec<u8>,
    header: Vec<String>,
    tables: Vec<crate::parquet_io::Table>,
    errors: Vec<u8>,
    rows: u64,
    failed: u64,
    version: Option<String>,
}

/// Scores `rows`: one request; if it fails and holds several rows, each row alone (so one
/// bad row fails alone).
async fn score_chunk(
    scorer: Arc<dyn Scorer>,
    mapping: Arc<(Option<Layout>, Option<Vec<String>>)>,
    out_format: Format,
    id_name: Arc<str>,
    rows: Vec<Row>,
) -> Done {
    let total = rows.len() as u64;
    let mapping = Mapping {
        model: scorer.model(),
        layout: mapping.0.as_ref(),
        columns: mapping.1.as_deref(),
    };
    let first = rows.first().map_or(0, |r| r.index);
    let encoded = mapping.encode(rows);
    let mut done = Done {
        text: Vec::new(),
        header: Vec::new(),
        tables: Vec::new(),
        errors: Vec::new(),
        rows: total,
        failed: 0,
        version: None,
    };
    let mut failed: Vec<(RowKey, String)> = encoded.failed;
    if let Some(request) = encoded.request {
        let id = format!("batch-{first}");
        match scorer.score(id, request.clone()).await {
            Ok(scored) => match render(
                out_format,
                &id_name,
                &encoded.rows,
                &scored,
                encoded.stacked,
                &mut done,
            ) {
                Ok(()) => done.version = Some(scored.version),
                Err(e) => failed.extend(encoded.rows.iter().map(|k| (k.clone(), e.clone()))),
            },
            Err(e) if encoded.rows.len() == 1 || !encoded.stacked => {
                failed.extend(encoded.rows.iter().map(|k| (k.clone(), e.clone())));
            }
            Err(_) => {
                // Row by row: slice the chunk's tensors.
                let n = encoded.rows.len();
                let parts: Result<Vec<Vec<_>>, String> = request
                    .inputs
                    .iter()
                    .map(|t| t.tensor.clone().split_rows(&vec![1; n]))
                    .collect();
                match parts {
                    Err(e) => failed.extend(encoded.rows.iter().map(|k| (k.clone(), e.clone()))),
                    Ok(parts) => {
                        for (r, key) in encoded.rows.iter().enumerate() {
                            let inputs = request
                                .inputs
                                .iter()
                                .zip(&parts)
                                .map(|(t, p)| inferd_core::NamedTensor {
                                    name: t.name.clone(),
                                    tensor: p[r].clone(),
                                })
                                .collect();
                            let one = inferd_runtime::InferRequest {
                                inputs,
                                ..request.clone()
                            };
                            let keys = std::slice::from_ref(key);
                            let answer = scorer.score(format!("batch-{}", key.index), one).await;
                            match answer.and_then(|s| {
                                render(out_format, &id_name, keys, &s, true, &mut done)
                                    .map(|()| s.version)
                            }) {
                                Ok(version) => done.version = Some(version),
                                Err(e) => failed.push((key.clone(), e)),
                            }
                        }
                    }
                }
            }
        }
    }
    // Errors in row order too.
    failed.sort_by_key(|(k, _)| k.index);
    for (key, why) in &failed {
        done.errors
            .extend_from_slice(output::error_line(key, why).as_bytes());
        done.failed += 1;
    }
    done
}

/// Adds the output rows of `keys` to `done`: text for CSV and JSON Lines, a table for Parquet.
fn render(
    format: Format,
    id_name: &str,
    keys: &[RowKey],
    scored: &crate::Scored,
    stacked: bool,
    done: &mut Done,
) -> Result<(), String> {
    if format == Format::Parquet {
        done.tables.push(output::table(keys, scored, stacked)?);
        return Ok(());
    }
    let f = output::rows(format, id_name, keys, scored, stacked)?;
    done.text.extend_from_slice(&f.text);
    done.header = f.header;
    Ok(())
}

fn open_append(path: &Path, keep: u64) -> Result<std::fs::File, BatchError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| BatchError::io(dir.display(), e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| BatchError::io(path.display(), e))?;
    // A resumed job drops what was written after its checkpoint.
    file.set_len(keep)
        .and_then(|()| file.seek(std::io::SeekFrom::Start(keep)).map(|_| ()))
        .map_err(|e| BatchError::io(path.display(), e))?;
    Ok(file)
}

/// Runs `job` to its end (or `--max-errors`).
pub async fn run(
    job: Job,
    scorer: Arc<dyn Scorer>,
    progress: &dyn Progress,
) -> Result<Summary, BatchError> {
    let started = Instant::now();
    let mut files = Vec::new();
    for input in &job.inputs {
        files.extend(location::input_files(input, job.input_format).await?);
    }
    if files.is_empty() {
        return Err(BatchError::Usage("no input files".into()));
    }
    let in_format = match job.input_format {
        Some(f) => f,
        None => Format::of_path(&files[0].0).ok_or_else(|| {
            BatchError::Usage(format!(
                "cannot tell the format of {} from its name: give --input-format",
                files[0].0
            ))
        })?,
    };
    let out_format = job
        .output_format
        .or_else(|| Format::of_path(&job.output.to_string()))
        .unwrap_or(in_format);
    let out_path = location::local_output(&job.output);
    let errors_path = job.errors.clone().unwrap_or_else(|| {
        let mut p = out_path.clone().into_os_string();
        p.push(".errors.jsonl");
        PathBuf::from(p)
    });
    let check_path = checkpoint::path(&out_path);
    let total_bytes: u64 = files
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let identity = format!(
        "model={} inputs={:?} shard={} in={in_format:?} out={out_format:?} columns={:?} id={:?}",
        job.model,
        files.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        job.shard,
        job.columns,
        job.id_column
    );
    let mut state = match Checkpoint::read(&check_path)? {
        Some(c) if job.resume => {
            if c.job != identity {
                return Err(BatchError::Usage(format!(
                    "{} belongs to another job ({}); this one is {identity}",
                    check_path.display(),
                    c.job
                )));
            }
            c
        }
        Some(_) => {
            return Err(BatchError::Usage(format!(
                "{} exists: an unfinished job wrote {}; --resume continues it",
                check_path.display(),
                out_path.display()
            )));
        }
        None if out_path.exists() && std::fs::metadata(&out_path).is_ok_and(|m| m.len() > 0) => {
            return Err(BatchError::Usage(format!(
                "{} exists (remove it to score again)",
                out_path.display()
            )));
        }
        None => Checkpoint {
            job: identity,
            ..Default::default()
        },
    };
    let resumed_at = state.rows;
    let parquet_out = out_format == Format::Parquet;
    let mut out = if parquet_out {
        let id_name = job.id_column.clone().unwrap_or_else(|| "row".into());
        Out::Parquet(Box::new(crate::parquet_io::ParquetSink::new(
            &out_path,
            &id_name,
            state.parts,
        )?))
    } else {
        Out::Text(std::io::BufWriter::with_capacity(
            1 << 20,
            open_append(&out_path, state.output_bytes)?,
        ))
    };
    let mut errs = std::io::BufWriter::new(open_append(&errors_path, state.errors_bytes)?);

    let model = scorer.model().clone();
    let layout = match in_format {
        Format::Csv => {
            let header = reader::csv_header(&files)?;
            Some(
                Layout::for_fields(
                    &model,
                    &header,
                    job.columns.as_deref(),
                    job.id_column.as_deref(),
                    false,
                )
                .map_err(BatchError::Usage)?,
            )
        }
        // Columns map as a CSV header's do; a list column feeds a vector whole.
        Format::Parquet => Some(
            Layout::for_fields(
                &model,
                &crate::parquet_read::header(&files)?,
                job.columns.as_deref(),
                job.id_column.as_deref(),
                true,
            )
            .map_err(BatchError::Usage)?,
        ),
        Format::Jsonl => None,
    };
    let mapping = Arc::new((layout, job.columns.clone()));
    let id_name: Arc<str> = Arc::from(job.id_column.clone().unwrap_or_else(|| "row".into()));
    let rows_per_chunk = model.rows_per_request(job.batch_size);
    let concurrency = job.concurrency.max(1);
    let bytes = Arc::new(AtomicU64::new(0));
    // Two bundles queued: the reader stays ahead while the job takes chunks from a third.
    let (tx, mut rx) = mpsc::channel::<reader::Bundle>(2);
    let settings = ReadSettings {
        files,
        format: in_format,
        id_column: job.id_column.clone(),
        shard: job.shard,
        skip: state.rows,
        rows_per_chunk,
        bytes: Arc::clone(&bytes),
    };
    let reading = std::thread::Builder::new()
        .name("batch-read".into())
        .spawn(move || reader::read(settings, tx))
        .map_err(|e| BatchError::io("reader thread", e))?;

    // Chunks are scored by futures of this task, not spawned tasks: encoding and writing a
    // chunk take far less than scoring it, and each hand-off between threads took a core
    // from a model thread (spawned tasks: ~13k context switches for 1,562 chunks).
    let mut in_flight = FuturesOrdered::new();
    let mut waiting: VecDeque<Vec<Row>> = VecDeque::new();
    let mut input_done = false;
    let mut last_check = Instant::now();
    let mut last_part = Instant::now();
    let mut stopped = None;
    loop {
        while in_flight.len() < concurrency
            && let Some(rows) = waiting.pop_front()
        {
            in_flight.push_back(score_chunk(
                Arc::clone(&scorer),
                Arc::clone(&mapping),
                out_format,
                Arc::clone(&id_name),
                rows,
            ));
        }
        let more = !input_done && waiting.is_empty();
        // Scoring first: polling the chunks in flight encodes and submits the new ones.
        let done = tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => done,
            bundle = rx.recv(), if more => {
                match bundle {
                    Some(chunks) => waiting.extend(chunks),
                    None => input_done = true,
                }
                continue;
            }
            else => break,
        };
        match &mut out {
            Out::Text(w) => {
                if out_format == Format::Csv && state.output_bytes == 0 && !done.text.is_empty() {
                    let mut header = csv::WriterBuilder::new().from_writer(Vec::new());
                    let _ = header.write_record(&done.header);
                    let line = header.into_inner().unwrap_or_default();
                    w.write_all(&line)
                        .map_err(|e| BatchError::io(out_path.display(), e))?;
                    state.output_bytes += line.len() as u64;
                }
                w.write_all(&done.text)
                    .map_err(|e| BatchError::io(out_path.display(), e))?;
            }
            Out::Parquet(sink) => {
                for table in done.tables {
                    sink.push(table)?;
                }
            }
        }
        errs.write_all(&done.errors)
            .map_err(|e| BatchError::io(errors_path.display(), e))?;
        state.output_bytes += done.text.len() as u64;
        state.errors_bytes += done.errors.len() as u64;
        state.rows += done.rows;
        state.errors += done.failed;
        if let Some(v) = done.version
            && !state.versions.contains(&v)
        {
            state.versions.push(v);
        }
        if let Some(max) = job.max_errors
            && state.errors > max
        {
            stopped = Some(BatchError::TooManyErrors {
                errors: state.errors,
                max,
            });
        }
        let last = input_done && waiting.is_empty() && in_flight.is_empty();
        if stopped.is_some() || last || last_check.elapsed() >= CHECKPOINT_EVERY {
            sync(&mut errs, &errors_path)?;
            match &mut out {
                Out::Text(w) => {
                    sync(w, &out_path)?;
                    state.write(&check_path)?;
                }
                // A part per row group or per PART_EVERY: fewer, larger row groups than a
                // checkpoint every half second would make.
                Out::Parquet(sink)
                    if sink.part_rows() >= crate::parquet_io::ROW_GROUP
                        || last_part.elapsed() >= PART_EVERY =>
                {
                    state.parts = sink.close_part()?;
                    state.write(&check_path)?;
                    last_part = Instant::now();
                }
                Out::Parquet(_) => {}
            }
            last_check = Instant::now();
            progress.update(
                state.rows,
                state.errors,
                bytes.load(Ordering::Relaxed),
                total_bytes,
            );
        }
        if stopped.is_some() {
            break;
        }
    }
    drop(rx);
    if stopped.is_none() {
        reading
            .join()
            .map_err(|_| BatchError::Model("the reader thread failed".into()))??;
    }
    if let Some(e) = stopped {
        return Err(e);
    }
    match out {
        Out::Parquet(sink) => sink.finish(&out_path)?,
        Out::Text(mut w) => sync(&mut w, &out_path)?,
    }
    sync(&mut errs, &errors_path)?;
    location::upload(&out_path, &job.output).await?;
    let _ = std::fs::remove_file(&check_path);
    let seconds = started.elapsed().as_secs_f64();
    let this_run = state.rows - resumed_at;
    Ok(Summary {
        model: job.model,
        versions: state.versions,
        rows: state.rows,
        scored: state.rows - state.errors,
        errors: state.errors,
        seconds,
        rows_per_second: this_run as f64 / seconds.max(1e-9),
        resumed_at,
        shard: job.shard.to_string(),
        output: job.output.to_string(),
        errors_file: errors_path.display().to_string(),
    })
}

/// Where output rows go: appended text (CSV, JSON Lines), or a Parquet file's row groups.
enum Out {
    Text(std::io::BufWriter<std::fs::File>),
    Parquet(Box<crate::parquet_io::ParquetSink>),
}

/// How often written rows are made durable and the checkpoint moves on.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// How often a Parquet output closes a part file (and its checkpoint moves on).
const PART_EVERY: Duration = Duration::from_secs(5);

fn sync(w: &mut std::io::BufWriter<std::fs::File>, path: &Path) -> Result<(), BatchError> {
    w.flush()
        .and_then(|()| w.get_ref().sync_data())
        .map_err(|e| BatchError::io(path.display(), e))
}
