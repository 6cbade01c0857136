//! Per model version metrics, built at scrape time from the runtime's statistics: the same
//! numbers the statistics extension answers, and unloaded versions disappear with their model.

use std::collections::HashMap;
use std::sync::Arc;

use inferd_runtime::{CacheFigures, CountNs, HistogramSnapshot, Runtime, StatsSnapshot};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

type Value = fn(&StatsSnapshot) -> f64;

fn us(d: CountNs) -> f64 {
    (d.ns / 1000) as f64
}

/// Triton's counters: name, help, value.
const COUNTERS: &[(&str, &str, Value)] = &[
    (
        "nv_inference_request_success",
        "Number of successful inference requests, all batch sizes",
        |s| s.success.count as f64,
    ),
    (
        "nv_inference_count",
        "Number of inferences performed (a batch of n counts n)",
        |s| s.inference_count as f64,
    ),
    (
        "nv_inference_exec_count",
        "Number of model executions performed (a batch counts once)",
        |s| s.execution_count as f64,
    ),
    (
        "nv_inference_request_duration_us",
        "Cumulative inference request duration in microseconds",
        |s| us(s.success),
    ),
    (
        "nv_inference_queue_duration_us",
        "Cumulative inference queuing duration in microseconds",
        |s| us(s.queue),
    ),
    (
        "nv_inference_compute_input_duration_us",
        "Cumulative compute input duration in microseconds",
        |s| us(s.compute_input),
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "Cumulative compute inference duration in microseconds",
        |s| us(s.compute_infer),
    ),
    (
        "nv_inference_compute_output_duration_us",
        "Cumulative inference compute output duration in microseconds",
        |s| us(s.compute_output),
    ),
    (
        "nv_cache_num_hits_per_model",
        "Number of requests answered from the response cache",
        |s| s.cache_hit.count as f64,
    ),
    (
        "nv_cache_num_misses_per_model",
        "Number of requests that looked in the response cache and ran",
        |s| s.cache_miss.count as f64,
    ),
];

const FAILURE: (&str, &str) = (
    "nv_inference_request_failure",
    "Number of failed inference requests, all batch sizes, by reason",
);
const SHADOW: (&str, &str) = (
    "inferd_shadow_requests_total",
    "Shadow copies by result: match, mismatch, error (the shadow failed), dropped (its queue was full)",
);
const SHADOW_DIFF: (&str, &str) = (
    "inferd_shadow_max_abs_diff",
    "Largest absolute difference between a float output of the shadow and of the primary, per request",
);

const SEQUENCES_ACTIVE: (&str, &str) = (
    "inferd_sequences_active",
    "Live sequences of a sequence model (each holds a slot and its state)",
);
const SEQUENCES_RELEASED: (&str, &str) = (
    "inferd_sequences_idle_released_total",
    "Sequences released because no request came for max_sequence_idle_us",
);

/// Gauges per model version: Triton's pending count, and the saturation gauges autoscalers read
/// (KEDA, the HPA through prometheus-adapter); the server's totals follow.
const GAUGES: &[(&str, &str, Value)] = &[
    (
        "nv_inference_pending_request_count",
        "Instantaneous number of pending requests awaiting execution per-model",
        |s| s.pending as f64,
    ),
    (
        "inferd_queue_depth",
        "Requests waiting in the model version's queue now",
        |s| s.pending as f64,
    ),
    (
        "inferd_inflight_requests",
        "Requests in the runtime for the model version now, queued or running",
        |s| s.inflight as f64,
    ),
    (
        "inferd_instance_utilization",
        "Busy share of the model version's instance time over the last 10 s (0 to 1)",
        |s| s.utilization,
    ),
];
const SERVER_QUEUE: (&str, &str) = (
    "inferd_server_queue_depth",
    "Requests waiting in every model's queue now",
);
const SERVER_INFLIGHT: (&str, &str) = (
    "inferd_server_inflight_requests",
    "Requests in the runtime now, queued or running, all models",
);
const SERVER_UTILIZATION: (&str, &str) = (
    "inferd_server_instance_utilization",
    "Busy share of all model instances over the last 10 s (0 to 1)",
);

/// The response cache (`--cache-size`), when the server has one.
type CacheValue = fn(&CacheFigures) -> f64;
const CACHE: &[(&str, &str, MetricType, CacheValue)] = &[
    (
        "inferd_cache_bytes",
        "Bytes the response cache holds (keys, answers and bookkeeping)",
        MetricType::GAUGE,
        |c| c.bytes as f64,
    ),
    (
        "inferd_cache_capacity_bytes",
        "Size of the response cache (--cache-size)",
        MetricType::GAUGE,
        |c| c.capacity as f64,
    ),
    (
        "inferd_cache_entries",
        "Answers in the response cache",
        MetricType::GAUGE,
        |c| c.entries as f64,
    ),
    (
        "inferd_cache_evictions_total",
        "Answers evicted from the response cache to make room (least recently used first)",
        MetricType::COUNTER,
        |c| c.evictions as f64,
    ),
];

const MODEL_MEMORY: (&str, &str) = (
    "inferd_model_memory_bytes",
    "Memory a model's last load took (lazy mode: RSS growth across the load)",
);
const LOADS: (&str, &str) = (
    "inferd_model_loads_total",
    "Models loaded on demand (lazy mode)",
);
const EVICTIONS: (&str, &str) = (
    "inferd_model_evictions_total",
    "Models unloaded to make room under --model-memory-limit / --max-loaded-models",
);

type Histo = fn(&StatsSnapshot) -> &HistogramSnapshot;

const HISTOGRAMS: &[(&str, &str, Histo)] = &[
    (
        "inferd_request_duration_seconds",
        "Inference request duration in the runtime (queue, compute, answer)",
        |s| &s.request_seconds,
    ),
    (
        "inferd_queue_duration_seconds",
        "Time requests waited in the queue",
        |s| &s.queue_seconds,
    ),
    (
        "inferd_compute_duration_seconds",
        "Compute time (input, inference, output) of the execution each request was part of",
        |s| &s.compute_seconds,
    ),
    (
        "inferd_batch_size",
        "Rows per model execution, as the dynamic batcher formed them",
        |s| &s.batch_rows,
    ),
];

pub struct ModelCollector {
    runtime: Arc<Runtime>,
    descs: Vec<Desc>,
}

impl ModelCollector {
    pub fn new(runtime: Arc<Runtime>) -> ModelCollector {
        let labels = || vec!["model".to_string(), "version".to_string()];
        let mut descs: Vec<Desc> = COUNTERS
            .iter()
            .map(|(name, help, _)| (*name, *help, labels()))
            .chain(
                HISTOGRAMS
                    .iter()
                    .map(|(name, help, _)| (*name, *help, labels())),
            )
            .chain([
                (SEQUENCES_ACTIVE.0, SEQUENCES_ACTIVE.1, labels()),
                (SEQUENCES_RELEASED.0, SEQUENCES_RELEASED.1, labels()),
            ])
            .chain(
                GAUGES
                    .iter()
                    .map(|(name, help, _)| (*name, *help, labels())),
            )
            .chain(
                [SERVER_QUEUE, SERVER_INFLIGHT, SERVER_UTILIZATION]
                    .iter()
                    .map(|(name, help)| (*name, *help, Vec::new())),
            )
            .chain(
                CACHE
                    .iter()
                    .map(|(name, help, _, _)| (*name, *help, Vec::new())),
            )
            .chain([
                (MODEL_MEMORY.0, MODEL_MEMORY.1, vec!["model".to_string()]),
                (LOADS.0, LOADS.1, Vec::new()),
                (EVICTIONS.0, EVICTIONS.1, Vec::new()),
            ])
            .map(|(name, help, labels)| desc(name, help, labels))
            .collect();
        let mut failure_labels = labels();
        failure_labels.push("reason".into());
        descs.push(desc(FAILURE.0, FAILURE.1, failure_labels));
        let mut shadow_labels = labels();
        shadow_labels.push("result".into());
        descs.push(desc(SHADOW.0, SHADOW.1, shadow_labels));
        let mut diff_labels = labels();
        diff_labels.push("output".into());
        descs.push(desc(SHADOW_DIFF.0, SHADOW_DIFF.1, diff_labels));
        ModelCollector { runtime, descs }
    }
}

fn desc(name: &str, help: &str, labels: Vec<String>) -> Desc {
    Desc::new(name.into(), help.into(), labels, HashMap::new())
        .expect("static metric descriptions are valid")
}

fn labels(pairs: &[(&str, &str)]) -> Vec<proto::LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut pair = proto::LabelPair::default();
            pair.set_name(name.to_string());
            pair.set_value(value.to_string());
            pair
        })
        .collect()
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.into());
    family.set_help(help.into());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

fn gauge(labels: Vec<proto::LabelPair>, value: f64) -> proto::Metric {
    let mut g = proto::Gauge::default();
    g.set_value(value);
    let mut metric = proto::Metric::from_label(labels);
    metric.set_gauge(g);
    metric
}

fn counter(labels: Vec<proto::LabelPair>, value: f64) -> proto::Metric {
    let mut c = proto::Counter::default();
    c.set_value(value);
    let mut m = proto::Metric::from_label(labels);
    m.set_counter(c);
    m
}

pub(super) fn histogram(labels: Vec<proto::LabelPair>, h: &HistogramSnapshot) -> proto::Metric {
    let mut out = proto::Histogram::default();
    out.set_sample_count(h.count);
    out.set_sample_sum(h.sum);
    out.set_bucket(
        h.buckets
            .iter()
            .map(|(bound, count)| {
                let mut b = proto::Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(*count);
                b
            })
            .collect(),
    );
    let mut m = proto::Metric::from_label(labels);
    m.set_histogram(out);
    m
}

impl Collector for ModelCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = self.runtime.statistics(None, None).unwrap_or_default();
        let rows: Vec<(String, String, StatsSnapshot)> = stats
            .into_iter()
            .map(|row| (row.name, row.version.to_string(), row.stats))
            .collect();
        let mut families = Vec::new();
        for (name, help, value) in COUNTERS {
            let metrics = rows
                .iter()
                .map(|(m, v, s)| counter(labels(&[("model", m), ("version", v)]), value(s)))
                .collect();
            families.push(family(name, help, MetricType::COUNTER, metrics));
        }
        let failures = rows
            .iter()
            .flat_map(|(m, v, s)| {
                s.failures.iter().map(move |(reason, n)| {
                    let l = labels(&[("model", m), ("version", v), ("reason", reason.as_str())]);
                    counter(l, *n as f64)
                })
            })
            .collect();
        families.push(family(FAILURE.0, FAILURE.1, MetricType::COUNTER, failures));
        // Sequence models only.
        let sequences: Vec<_> = rows
            .iter()
            .filter_map(|(m, v, s)| Some((labels(&[("model", m), ("version", v)]), s.sequences?)))
            .collect();
        let (active, released) = sequences
            .into_iter()
            .map(|(l, c)| {
                (
                    gauge(l.clone(), c.active as f64),
                    counter(l, c.released_idle as f64),
                )
            })
            .unzip();
        for (name, help, value) in GAUGES {
            let metrics = rows
                .iter()
                .map(|(m, v, s)| gauge(labels(&[("model", m), ("version", v)]), value(s)))
                .collect();
            families.push(family(name, help, MetricType::GAUGE, metrics));
        }
        let sum = |f: fn(&StatsSnapshot) -> f64| rows.iter().map(|(_, _, s)| f(s)).sum::<f64>();
        let instances = sum(|s| f64::from(s.instances));
        let busy = sum(|s| s.utilization * f64::from(s.instances));
        for ((name, help), value) in [
            (SERVER_QUEUE, sum(|s| s.pending as f64)),
            (SERVER_INFLIGHT, sum(|s| s.inflight as f64)),
            (
                SERVER_UTILIZATION,
                if instances > 0.0 {
                    busy / instances
                } else {
                    0.0
                },
            ),
        ] {
            families.push(family(
                name,
                help,
                MetricType::GAUGE,
                vec![gauge(Vec::new(), value)],
            ));
        }
        if let Some(cache) = self.runtime.cache_figures() {
            for (name, help, kind, value) in CACHE {
                let metric = match kind {
                    MetricType::COUNTER => counter(Vec::new(), value(&cache)),
                    _ => gauge(Vec::new(), value(&cache)),
                };
                families.push(family(name, help, *kind, vec![metric]));
            }
        }
        if let Some(budget) = self.runtime.budget_figures() {
            let memory = budget
                .memory
                .iter()
                .map(|(m, bytes)| gauge(labels(&[("model", m)]), *bytes as f64))
                .collect();
            families.push(family(
                MODEL_MEMORY.0,
                MODEL_MEMORY.1,
                MetricType::GAUGE,
                memory,
            ));
            for ((name, help), n) in [(LOADS, budget.loads), (EVICTIONS, budget.evictions)] {
                let metric = vec![counter(Vec::new(), n as f64)];
                families.push(family(name, help, MetricType::COUNTER, metric));
            }
        }
        let (a, r) = (SEQUENCES_ACTIVE, SEQUENCES_RELEASED);
        families.push(family(a.0, a.1, MetricType::GAUGE, active));
        families.push(family(r.0, r.1, MetricType::COUNTER, released));
        let shadows = self.runtime.all_shadow_figures();
        let results = shadows
            .iter()
            .flat_map(|(m, f)| {
                let v = f.version.to_string();
                [
                    ("match", f.matched),
                    ("mismatch", f.mismatch),
                    ("error", f.error),
                    ("dropped", f.dropped),
                ]
                .into_iter()
                .map(move |(result, n)| {
                    let l = labels(&[("model", m), ("version", &v), ("result", result)]);
                    counter(l, n as f64)
                })
            })
            .collect();
        families.push(family(SHADOW.0, SHADOW.1, MetricType::COUNTER, results));
        let diffs = shadows
            .iter()
            .flat_map(|(m, f)| {
                let v = f.version.to_string();
                f.diffs.iter().map(move |(output, h)| {
                    histogram(
                        labels(&[("model", m), ("version", &v), ("output", output)]),
                        h,
                    )
                })
            })
            .collect();
        families.push(family(
            SHADOW_DIFF.0,
            SHADOW_DIFF.1,
            MetricType::HISTOGRAM,
            diffs,
        ));
        for (name, help, get) in HISTOGRAMS {
            let metrics = rows
                .iter()
                .map(|(m, v, s)| histogram(labels(&[("model", m), ("version", v)]), get(s)))
                .collect();
            families.push(family(name, help, MetricType::HISTOGRAM, metrics));
        }
        families
    }
}
