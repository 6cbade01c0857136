//! The audit log: one record per inference request (answered, failed, rejected by a front end
//! or abandoned by its caller, shadow copies included), written by an observer of the runtime.
//!
//! Records go through a bounded queue to a writer thread that appends them to segment files
//! (JSON lines), rotated by size and age and pruned by count and age. Each record carries the
//! hash of the one before it and a hash of itself, so `verify` finds any change and names the
//! record. When the writer falls behind, requests wait for room in the queue (nothing is lost)
//! unless the log is set to drop, and counts what it drops. Closing writes out everything.

mod record;
pub mod segment;
pub mod sink;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use record::Payloads;
pub use record::{GENESIS, code, sha256_hex, split_hash, tensors_sha256};
pub use segment::{FindQuery, find};

use crate::observer::{Completed, Observer};
use crate::stats::{Histogram, HistogramSnapshot, LATENCY_BUCKETS};

/// What to do when the writer falls behind and the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Requests wait for room: nothing is lost.
    Block,
    /// The record is dropped and counted.
    Drop,
}

#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub dir: PathBuf,
    /// A segment is closed past this size...
    pub segment_bytes: u64,
    /// ...or this age.
    pub segment_age: Duration,
    /// Closed segments kept (oldest removed first); `None`: all.
    pub keep_segments: Option<usize>,
    /// Closed segments younger than this kept; `None`: all.
    pub keep_age: Option<Duration>,
    /// Written records reach the disk (fsync) at least this often; zero: after every batch.
    pub fsync_every: Duration,
    /// Records that may wait for the writer.
    pub queue: usize,
    pub when_full: WhenFull,
}

impl AuditSettings {
    pub fn new(dir: impl Into<PathBuf>) -> AuditSettings {
        AuditSettings {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            segment_age: Duration::from_secs(3600),
            keep_segments: None,
            keep_age: None,
            fsync_every: Duration::from_secs(1),
            queue: 65_536,
            when_full: WhenFull::Block,
        }
    }
}

/// The audit log's own figures (exported as metrics).
#[derive(Debug, Clone)]
pub struct AuditStats {
    pub written: u64,
    pub dropped: u64,
    pub failed: u64,
    pub queued: u64,
    /// Time from a record being queued to it being written.
    pub write_seconds: HistogramSnapshot,
}

#[derive(Default)]
struct Queue {
    records: Vec<(Vec<u8>, Instant)>,
    closing: bool,
    /// The writer has written out everything it took.
    idle: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer (records waiting, or closing).
    work: Condvar,
    /// Wakes requests waiting for room.
    room: Condvar,
    capacity: usize,
    when_full: WhenFull,
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    write_latency: Histogram,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Audit {
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    dir: PathBuf,
}

impl Audit {
    /// Opens the log in `settings.dir` (continuing its chain) and starts the writer.
    pub fn start(settings: AuditSettings) -> Result<Audit, String> {
        let files = segment::Writer::open(&settings)?;
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            work: Condvar::new(),
            room: Condvar::new(),
            capacity: settings.queue.max(1),
            when_full: settings.when_full,
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            write_latency: Histogram::new(LATENCY_BUCKETS),
        });
        let worker = Arc::clone(&shared);
        let fsync_every = settings.fsync_every;
        let writer = std::thread::Builder::new()
            .name("inferd-audit".into())
            .spawn(move || write_loop(&worker, files, fsync_every))
            .map_err(|e| format!("cannot start the audit writer: {e}"))?;
        Ok(Audit {
            shared,
            writer: Mutex::new(Some(writer)),
            dir: settings.dir,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn push(&self, body: Vec<u8>) {
        let shared = &*self.shared;
        let mut queue = shared.lock();
        while queue.records.len() >= shared.capacity && !queue.closing {
            if shared.when_full == WhenFull::Drop {
                shared.dropped.fetch_add(1, Relaxed);
                return;
            }
            queue = shared.room.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
        if queue.closing {
            // After close nothing is written; say so rather than lose it silently.
            shared.dropped.fetch_add(1, Relaxed);
            tracing::error!("audit record after the log closed: dropped");
            return;
        }
        queue.records.push((body, Instant::now()));
        queue.idle = false;
        // The writer takes batches every TICK; waking it for each record would cost more than
        // the record (a futex wake and a context switch each).
        if queue.records.len() >= BATCH {
            shared.work.notify_one();
        }
    }

    /// Writes out every queued record and syncs the segment; later records are dropped.
    pub fn close(&self) {
        {
            let mut queue = self.shared.lock();
            queue.closing = true;
        }
        self.shared.work.notify_one();
        self.shared.room.notify_all();
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }

    /// Waits until everything queued so far is written (tests, `find` on a live log).
    pub fn flush(&self) {
        let mut queue = self.shared.lock();
        self.shared.work.notify_one();
        while !(queue.closing || queue.records.is_empty() && queue.idle) {
            queue = self
                .shared
                .room
                .wait_timeout(queue, Duration::from_millis(5))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            self.shared.work.notify_one();
        }
    }

    pub fn stats(&self) -> AuditStats {
        AuditStats {
            written: self.shared.written.load(Relaxed),
            dropped: self.shared.dropped.load(Relaxed),
            failed: self.shared.failed.load(Relaxed),
            queued: self.shared.lock().records.len() as u64,
            write_seconds: self.shared.write_latency.snapshot(),
        }
    }
}

/// Records taken by the writer at a time; a queue this long wakes it at once.
const BATCH: usize = 512;
/// The writer looks at the queue at least this often.
const TICK: Duration = Duration::from_millis(5);

fn write_loop(shared: &Shared, mut files: segment::Writer, fsync_every: Duration) {
    let mut last_sync = Instant::now();
    loop {
        let (batch, closing) = {
            let mut queue = shared.lock();
            if queue.records.is_empty() && !queue.closing {
                queue.idle = true;
                shared.room.notify_all();
                queue = shared
                    .work
                    .wait_timeout(queue, TICK)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            (std::mem::take(&mut queue.records), queue.closing)
        };
        shared.room.notify_all();
        for (body, queued) in &batch {
            match files.append(body) {
                Ok(()) => {
                    shared.written.fetch_add(1, Relaxed);
                    shared.write_latency.observe(queued.elapsed().as_secs_f64());
                }
                Err(e) => {
                    shared.failed.fetch_add(1, Relaxed);
                    tracing::error!("cannot write an audit record: {e}");
                }
            }
        }
        let due = fsync_every.is_zero() || last_sync.elapsed() >= fsync_every;
        if (!batch.is_empty() && due) || closing {
            if let Err(e) = files.sync() {
                tracing::error!("cannot sync the audit log: {e}");
            }
            last_sync = Instant::now();
        }
        if closing {
            let left = std::mem::take(&mut shared.lock().records);
            for (body, _) in &left {
                if files.append(body).is_ok() {
                    shared.written.fetch_add(1, Relaxed);
                }
            }
            if let Err(e) = files.close() {
                tracing::error!("cannot close the audit segment: {e}");
            }
            return;
        }
    }
}

/// The audit observer: the record of each request, with the payloads its model's
/// `[audit]` asks for.
impl Observer for Audit {
    fn completed(&self, event: &Completed<'_>) {
        let payloads =
            event
                .spec
                .and_then(|s| s.config.audit.as_ref())
                .map_or(Payloads::None, |a| {
                    if a.sample >= 1.0 || crate::router::random_unit() < a.sample {
                        a.payloads
                    } else {
                        Payloads::None
                    }
                });
        self.push(record::body(event, payloads));
    }

    fn event(&self, model: &str, message: &str) {
        self.push(record::event(model, message));
    }

    fn needs_request(&self) -> bool {
        true
    }
}
