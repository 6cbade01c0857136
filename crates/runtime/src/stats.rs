//! What a model version did: the statistics extension's counters and durations, failure reasons
//! and latency/batch-size histograms. Recorded once per event by the scheduler (executions) and
//! the served model (requests); the statistics endpoints and `/metrics` both read snapshots of
//! the same numbers, so they cannot disagree.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a request failed (Triton's `reason` label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureReason {
    /// The queue was full.
    Rejected,
    /// The client went away before the answer.
    Canceled,
    /// The backend failed or crashed.
    Backend,
    /// Its deadline passed in the queue.
    Timeout,
    /// Anything else, e.g. inputs that do not match the model.
    Other,
}

impl FailureReason {
    pub const ALL: [FailureReason; 5] = [
        FailureReason::Rejected,
        FailureReason::Canceled,
        FailureReason::Backend,
        FailureReason::Timeout,
        FailureReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Rejected => "REJECTED",
            FailureReason::Canceled => "CANCELED",
            FailureReason::Backend => "BACKEND",
            FailureReason::Timeout => "TIMEOUT",
            FailureReason::Other => "OTHER",
        }
    }
}

/// A count and the total time of the events counted (the protocol's StatisticDuration).
#[derive(Debug, Default)]
struct Duo {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Duo {
    fn add(&self, d: Duration) {
        self.count.fetch_add(1, Relaxed);
        self.ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    fn get(&self) -> CountNs {
        CountNs {
            count: self.count.load(Relaxed),
            ns: self.ns.load(Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountNs {
    pub count: u64,
    pub ns: u64,
}

/// Upper bounds of the latency histograms, in seconds: 50 us to 10 s, about 2.5x apart.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// Upper bounds of the batch-size histogram, in rows.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// A fixed-bucket histogram with lock-free observations.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket, not cumulative; one more for +Inf.
    counts: Vec<AtomicU64>,
    /// Sum of observations in millionths of the unit (microseconds for seconds).
    sum_micro: AtomicU64,
}

/// A histogram's state: cumulative counts per upper bound (+Inf last is `count`).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micro
            .fetch_add((value * 1e6).round() as u64, Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(bound, c)| {
                cumulative += c.load(Relaxed);
                (*bound, cumulative)
            })
            .collect();
        let count = cumulative + self.counts[self.bounds.len()].load(Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum: self.sum_micro.load(Relaxed) as f64 / 1e6,
        }
    }
}

/// Durations of one execution's phases, given to every request in the batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutionTimes {
    pub queue: Duration,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
}

#[derive(Debug, Default)]
struct BatchStats {
    compute_input: Duo,
    compute_infer: Duo,
    compute_output: Duo,
}

/// Counters of one model version.
#[derive(Debug)]
pub struct ModelStats {
    success: Duo,
    fail: Duo,
    queue: Duo,
    compute_input: Duo,
    compute_infer: Duo,
    compute_output: Duo,
    failures: [AtomicU64; 5],
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    /// Milliseconds since the epoch; 0 before the first inference.
    last_inference_ms: AtomicU64,
    batches: Mutex<BTreeMap<u64, BatchStats>>,
    request_seconds: Histogram,
    queue_seconds: Histogram,
    compute_seconds: Histogram,
    batch_rows: Histogram,
    /// Requests in the runtime now (queued or running), for autoscalers.
    pub(crate) inflight: AtomicU64,
    /// Requests answered from the response cache (lookup time), and requests that looked and
    /// ran (lookup and insertion time).
    cache_hit: Duo,
    cache_miss: Duo,
}

impl Default for ModelStats {
    fn default() -> Self {
        ModelStats {
            success: Duo::default(),
            fail: Duo::default(),
            queue: Duo::default(),
            compute_input: Duo::default(),
            compute_infer: Duo::default(),
            compute_output: Duo::default(),
            failures: Default::default(),
            inference_count: AtomicU64::new(0),
            execution_count: AtomicU64::new(0),
            last_inference_ms: AtomicU64::new(0),
            batches: Mutex::default(),
            request_seconds: Histogram::new(LATENCY_BUCKETS),
            queue_seconds: Histogram::new(LATENCY_BUCKETS),
            compute_seconds: Histogram::new(LATENCY_BUCKETS),
            batch_rows: Histogram::new(BATCH_BUCKETS),
            inflight: AtomicU64::new(0),
            cache_hit: Duo::default(),
            cache_miss: Duo::default(),
        }
    }
}

impl ModelStats {
    /// One execution of `rows` rows (the scheduler, once per batch).
    pub fn execution(&self, rows: usize, times: &ExecutionTimes) {
        self.execution_count.fetch_add(1, Relaxed);
        self.batch_rows.observe(rows as f64);
        let mut batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let b = batches.entry(rows as u64).or_default();
        b.compute_input.add(times.compute_input);
        b.compute_infer.add(times.compute_infer);
        b.compute_output.add(times.compute_output);
    }

    /// One request answered with outputs: `rows` inferences that took `total` in the runtime.
    pub fn success(&self, rows: usize, total: Duration, times: &ExecutionTimes) {
        self.success.add(total);
        self.queue.add(times.queue);
        self.compute_input.add(times.compute_input);
        self.compute_infer.add(times.compute_infer);
        self.compute_output.add(times.compute_output);
        self.inference_count.fetch_add(rows as u64, Relaxed);
        self.request_seconds.observe(total.as_secs_f64());
        self.queue_seconds.observe(times.queue.as_secs_f64());
        self.compute_seconds.observe(
            (times.compute_input + times.compute_infer + times.compute_output).as_secs_f64(),
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_inference_ms.store(now, Relaxed);
    }

    /// A request answered from the response cache: a success without an execution (Triton
    /// counts it in success and cache_hit, not in inference_count).
    pub fn cache_hit(&self, total: Duration, lookup: Duration) {
        self.success.add(total);
        self.cache_hit.add(lookup);
        self.request_seconds.observe(total.as_secs_f64());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_inference_ms.store(now, Relaxed);
    }

    /// A request that found nothing in the cache: the time spent looking and storing.
    pub fn cache_miss(&self, spent: Duration) {
        self.cache_miss.add(spent);
    }

    pub fn failure(&self, reason: FailureReason, total: Duration) {
        self.fail.add(total);
        self.failures[reason as usize].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        StatsSnapshot {
            success: self.success.get(),
            fail: self.fail.get(),
            queue: self.queue.get(),
            compute_input: self.compute_input.get(),
            compute_infer: self.compute_infer.get(),
            compute_output: self.compute_output.get(),
            failures: FailureReason::ALL
                .iter()
                .map(|r| (*r, self.failures[*r as usize].load(Relaxed)))
                .collect(),
            inference_count: self.inference_count.load(Relaxed),
            execution_count: self.execution_count.load(Relaxed),
            last_inference_ms: self.last_inference_ms.load(Relaxed),
            batches: batches
                .iter()
                .map(|(rows, b)| BatchSnapshot {
                    batch_size: *rows,
                    compute_input: b.compute_input.get(),
                    compute_infer: b.compute_infer.get(),
                    compute_output: b.compute_output.get(),
                })
                .collect(),
            request_seconds: self.request_seconds.snapshot(),
            queue_seconds: self.queue_seconds.snapshot(),
            compute_seconds: self.compute_seconds.snapshot(),
            batch_rows: self.batch_rows.snapshot(),
            pending: 0,
            sequences: None,
            inflight: self.inflight.load(Relaxed),
            cache_hit: self.cache_hit.get(),
            cache_miss: self.cache_miss.get(),
            instances: 0,
            utilization: 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchSnapshot {
    pub batch_size: u64,
    pub compute_input: CountNs,
    pub compute_infer: CountNs,
    pub compute_output: CountNs,
}

/// A model version's statistics at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSnapshot {
    pub success: CountNs,
    pub fail: CountNs,
    pub queue: CountNs,
    pub compute_input: CountNs,
    pub compute_infer: CountNs,
    pub compute_output: CountNs,
    pub failures: Vec<(FailureReason, u64)>,
    pub inference_count: u64,
    pub execution_count: u64,
    pub last_inference_ms: u64,
    pub batches: Vec<BatchSnapshot>,
    /// Request, queue and compute (input + infer + output) latencies in seconds.
    pub request_seconds: HistogramSnapshot,
    pub queue_seconds: HistogramSnapshot,
    pub compute_seconds: HistogramSnapshot,
    /// Rows per execution.
    pub batch_rows: HistogramSnapshot,
    /// Requests waiting in the queue now.
    pub pending: u64,
    /// For a sequence model: its live sequences, and those released when idle.
    pub sequences: Option<crate::SequenceCounts>,
    /// Requests in the runtime now (queued or running).
    pub inflight: u64,
    pub cache_hit: CountNs,
    pub cache_miss: CountNs,
    /// Instances, and their busy share over the last few seconds (0 to 1).
    pub instances: u32,
    pub utilization: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let h = Histogram::new(BATCH_BUCKETS);
        for v in [1.0, 1.0, 3.0, 64.0, 1000.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 5);
        assert_eq!(s.sum, 1069.0);
        let at = |bound: f64| s.buckets.iter().find(|(b, _)| *b == bound).unwrap().1;
        assert_eq!(
            (at(1.0), at(2.0), at(4.0), at(64.0), at(512.0)),
            (2, 2, 3, 4, 4)
        );
    }
}
