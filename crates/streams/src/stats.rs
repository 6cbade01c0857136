//! What each stream has done, as `GET /v2/streams` shows it and as Prometheus metrics
//! (`inferd_stream_*{stream}`). The counters are the metrics themselves: one source for both.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use serde_json::{Value, json};

/// The metric families of every stream.
#[derive(Clone)]
pub struct Metrics {
    consumed: IntCounterVec,
    produced: IntCounterVec,
    dead_lettered: IntCounterVec,
    redelivered: IntCounterVec,
    retried: IntCounterVec,
    committed: IntCounterVec,
    in_flight: IntGaugeVec,
    lag: IntGaugeVec,
    committed_offset: IntGaugeVec,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Metrics, prometheus::Error> {
        let counter = |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), &["stream"])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        Ok(Metrics {
            consumed: counter(
                "inferd_stream_consumed_total",
                "Messages read from the stream's input",
            )?,
            produced: counter(
                "inferd_stream_produced_total",
                "Answers acknowledged by the broker on the output",
            )?,
            dead_lettered: counter(
                "inferd_stream_dead_lettered_total",
                "Messages acknowledged on the dead-letter topic",
            )?,
            redelivered: counter(
                "inferd_stream_redelivered_total",
                "Messages the broker delivered again (read before in this process, or a JetStream redelivery)",
            )?,
            retried: counter(
                "inferd_stream_retried_total",
                "Inference attempts retried because the model was unavailable (queue full, loading) or a produce failed",
            )?,
            committed: counter(
                "inferd_stream_committed_total",
                "Input messages committed (Kafka offsets stored for commit, JetStream acks)",
            )?,
            in_flight: gauge(
                "inferd_stream_in_flight",
                "Messages between receipt and commit",
                &["stream"],
            )?,
            lag: gauge(
                "inferd_stream_lag",
                "Messages in the input not yet committed by this stream's group",
                &["stream"],
            )?,
            committed_offset: gauge(
                "inferd_stream_committed_offset",
                "The next offset (Kafka) or stream sequence (JetStream) to be read after a restart, per partition",
                &["stream", "partition"],
            )?,
        })
    }
}

/// One stream's figures.
pub struct Stats {
    pub name: String,
    pub broker: String,
    pub input: String,
    pub output: String,
    pub dead_letter: String,
    pub consumed: IntCounter,
    pub produced: IntCounter,
    pub dead_lettered: IntCounter,
    pub redelivered: IntCounter,
    pub retried: IntCounter,
    pub committed: IntCounter,
    pub in_flight: IntGauge,
    pub lag: IntGauge,
    committed_offset: IntGaugeVec,
    state: Mutex<State>,
}

struct State {
    state: &'static str,
    last_error: Option<(SystemTime, String)>,
    offsets: BTreeMap<String, i64>,
    rates: Rates,
}

/// Messages per second in and out, over the time between two looks.
struct Rates {
    at: Instant,
    consumed: u64,
    produced: u64,
    consumed_per_s: f64,
    produced_per_s: f64,
}

impl Stats {
    pub fn new(metrics: &Metrics, spec: &crate::StreamSpec) -> Stats {
        let name = spec.name.as_str();
        Stats {
            name: name.to_string(),
            broker: spec.broker.clone(),
            input: spec.input.clone(),
            output: spec.output.clone(),
            dead_letter: spec.dead_letter.clone(),
            consumed: metrics.consumed.with_label_values(&[name]),
            produced: metrics.produced.with_label_values(&[name]),
            dead_lettered: metrics.dead_lettered.with_label_values(&[name]),
            redelivered: metrics.redelivered.with_label_values(&[name]),
            retried: metrics.retried.with_label_values(&[name]),
            committed: metrics.committed.with_label_values(&[name]),
            in_flight: metrics.in_flight.with_label_values(&[name]),
            lag: metrics.lag.with_label_values(&[name]),
            committed_offset: metrics.committed_offset.clone(),
            state: Mutex::new(State {
                state: "starting",
                last_error: None,
                offsets: BTreeMap::new(),
                rates: Rates {
                    at: Instant::now(),
                    consumed: 0,
                    produced: 0,
                    consumed_per_s: 0.0,
                    produced_per_s: 0.0,
                },
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }

    /// `starting`, `running`, `paused` (broker unreachable), `waiting` (model unavailable),
    /// `draining`, `stopped`, `failed`.
    pub fn set_state(&self, state: &'static str) {
        self.with(|s| s.state = state);
    }

    pub fn state(&self) -> &'static str {
        self.with(|s| s.state)
    }

    pub fn error(&self, message: impl Into<String>) {
        let message = message.into();
        self.with(|s| s.last_error = Some((SystemTime::now(), message)));
    }

    /// The next position to read after a restart for `partition`.
    pub fn set_offset(&self, partition: &str, next: i64) {
        self.committed_offset
            .with_label_values(&[self.name.as_str(), partition])
            .set(next);
        self.with(|s| {
            s.offsets.insert(partition.to_string(), next);
        });
    }

    pub fn status(&self) -> Value {
        let (consumed, produced) = (self.consumed.get(), self.produced.get());
        self.with(|s| {
            let elapsed = s.rates.at.elapsed().as_secs_f64();
            // Rates over the last second or more: a quick second look keeps the last figures.
            if elapsed >= 1.0 {
                s.rates.consumed_per_s = (consumed - s.rates.consumed) as f64 / elapsed;
                s.rates.produced_per_s = (produced - s.rates.produced) as f64 / elapsed;
                s.rates.at = Instant::now();
                s.rates.consumed = consumed;
                s.rates.produced = produced;
            }
            let last_error = s.last_error.as_ref().map(|(at, message)| {
                json!({
                    "at_unix_ms": at
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                    "message": message,
                })
            });
            json!({
                "name": self.name,
                "broker": self.broker,
                "input": self.input,
                "output": self.output,
                "dead_letter": self.dead_letter,
                "state": s.state,
                "consumed": consumed,
                "produced": produced,
                "dead_lettered": self.dead_lettered.get(),
                "committed": self.committed.get(),
                "redelivered": self.redelivered.get(),
                "retried": self.retried.get(),
                "in_flight": self.in_flight.get(),
                "lag": self.lag.get(),
                "committed_offsets": s.offsets,
                "consumed_per_s": (s.rates.consumed_per_s * 10.0).round() / 10.0,
                "produced_per_s": (s.rates.produced_per_s * 10.0).round() / 10.0,
                "last_error": last_error,
            })
        })
    }
}
