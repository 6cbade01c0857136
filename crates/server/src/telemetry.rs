//! Request-scoped logs and traces for the front ends: the request span that puts the request id
//! on every log line, request ids, and the trace spans exported over OTLP.
//!
//! Sampling is decided here, once per request, before any trace span exists: a caller's W3C
//! `traceparent` decides for its requests, others are sampled at the configured ratio. Spans of
//! unsampled requests are never created (`Span::none()`), so tracing at ratio 0 costs a random
//! number per request.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Target of the spans exported as traces (the OTLP layer listens to it alone).
pub use inferd_core::TRACE_TARGET;

use crate::AccessLog;

/// Changes the log filter at run time (implemented by the binary, which owns the subscriber).
pub trait LogControl: Send + Sync {
    /// The filter in force, in `EnvFilter` syntax (e.g. `info,tract_onnx=error`).
    fn filter(&self) -> String;
    fn set_filter(&self, filter: &str) -> Result<(), String>;
    /// `text` or `json`.
    fn format(&self) -> &'static str;
}

pub struct Telemetry {
    /// Traces are exported (an OTLP endpoint is configured).
    tracing: bool,
    /// Share of requests without a caller decision that are traced, 0 to 1 (an f64's bits:
    /// the trace settings API changes it at run time).
    ratio: AtomicU64,
    /// Triton's `trace_rate` (one request in N), kept while tracing is off.
    rate: AtomicU64,
    access: Arc<AccessLog>,
    logs: Option<Arc<dyn LogControl>>,
    next_id: AtomicU64,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new(false, 0.0, Arc::new(AccessLog::new(true)), None)
    }
}

impl Telemetry {
    pub fn new(
        tracing: bool,
        ratio: f64,
        access: Arc<AccessLog>,
        logs: Option<Arc<dyn LogControl>>,
    ) -> Telemetry {
        Telemetry {
            tracing,
            ratio: AtomicU64::new(ratio.clamp(0.0, 1.0).to_bits()),
            rate: AtomicU64::new(if ratio > 0.0 {
                (1.0 / ratio.min(1.0)).round() as u64
            } else {
                1000 // Triton's default
            }),
            access,
            logs,
            next_id: AtomicU64::new(1),
        }
    }

    /// Whether traces are exported at all (an OTLP endpoint is configured).
    pub fn exports_traces(&self) -> bool {
        self.tracing
    }

    /// Share of requests without a caller decision that are traced.
    pub fn sample_ratio(&self) -> f64 {
        f64::from_bits(self.ratio.load(Ordering::Relaxed))
    }

    /// Triton's view of sampling: whether it is on, and one request in how many.
    pub fn trace_rate(&self) -> (bool, u64) {
        (
            self.sample_ratio() > 0.0,
            self.rate.load(Ordering::Relaxed).max(1),
        )
    }

    /// Samples one request in `rate` when `on`, none otherwise (callers' decisions still hold).
    pub fn set_trace_rate(&self, on: bool, rate: u64) {
        let rate = rate.max(1);
        self.rate.store(rate, Ordering::Relaxed);
        let ratio = if on { 1.0 / rate as f64 } else { 0.0 };
        self.ratio.store(ratio.to_bits(), Ordering::Relaxed);
    }

    pub fn logs(&self) -> Option<&dyn LogControl> {
        self.logs.as_deref()
    }

    /// The access log's switch (the log itself is an observer of the runtime).
    pub fn access_log(&self) -> &AccessLog {
        &self.access
    }

    /// The span every log line of a request is written in.
    pub fn request_span(
        &self,
        protocol: &'static str,
        model: &str,
        id: &str,
        principal: &str,
    ) -> Span {
        tracing::info_span!("request", protocol, model, id, principal)
    }

    /// An id for a request whose client gave none, unique in this process: `inferd-<n>`.
    pub fn make_id(&self) -> String {
        format!("inferd-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// The root trace span of a request when it is sampled, continuing the caller's trace.
    pub fn trace(
        &self,
        protocol: &'static str,
        model: &str,
        principal: &str,
        carrier: &dyn Extractor,
    ) -> Option<Span> {
        let ratio = self.sample_ratio();
        if !self.tracing || (ratio == 0.0 && carrier.get("traceparent").is_none()) {
            return None;
        }
        let parent = TraceContextPropagator::new().extract(carrier);
        let caller = parent.span().span_context().clone();
        let sampled = if caller.is_valid() {
            caller.is_sampled()
        } else {
            ratio > 0.0 && random_unit() < ratio
        };
        if !sampled {
            return None;
        }
        let span = tracing::trace_span!(
            target: TRACE_TARGET,
            "infer",
            otel.kind = "server",
            protocol,
            model,
            enduser.id = principal
        );
        let _ = span.set_parent(parent);
        Some(span)
    }
}

/// A child trace span of `parent` (OTLP span name `name`), or nothing when not traced.
pub fn child(parent: Option<&Span>, name: &'static str) -> Option<Span> {
    parent.map(|p| tracing::trace_span!(target: TRACE_TARGET, parent: p, "stage", otel.name = name))
}

/// HTTP headers as a trace-context carrier.
pub struct Headers<'a>(pub &'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// gRPC metadata as a trace-context carrier.
pub struct Metadata<'a>(pub &'a tonic::metadata::MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// A uniform number in [0, 1) from a per-thread xorshift generator: sampling needs speed, not
/// quality.
fn random_unit() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let addr = &nanos as *const u64 as u64;
    (nanos ^ addr.rotate_left(32)) | 1
}

/// The W3C `traceparent` to pass on with the request's answer (stream outputs): its own trace
/// span when traced, else the caller's as received, else a fresh unsampled one so consumers
/// downstream can still join their spans to one id.
pub fn traceparent(context: &inferd_runtime::RequestContext) -> String {
    if let Some(span) = &context.trace {
        let otel = span.context();
        let sc = otel.span().span_context().clone();
        if sc.is_valid() {
            return format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            );
        }
    }
    if let Some(tp) = &context.traceparent {
        return tp.clone();
    }
    let word = || (random_unit() * (1u64 << 53) as f64) as u64;
    let (a, b, c) = (word(), word(), word());
    format!("00-{a:016x}{b:016x}-{:016x}-00", c | 1)
}
