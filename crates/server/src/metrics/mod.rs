//! Prometheus metrics (`/metrics` on the metrics port): Triton's per-model counters under
//! Triton's names, latency and batch-size histograms, process CPU/memory, and request counts of
//! both front ends by status.
//!
//! The `prometheus` crate writes the classic text format, where a counter keeps its name;
//! prometheus-client writes OpenMetrics, which appends `_total` to every counter and would break
//! dashboards built on Triton's `nv_inference_request_success`.

mod audit;
mod models;
mod process;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use inferd_runtime::Runtime;
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;

use crate::listen::ListenSettings;

/// The metrics of one server: a registry of its own (no process-global state).
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    grpc_requests: IntCounterVec,
}

impl Metrics {
    pub fn new(runtime: Arc<Runtime>, audit: Option<Arc<inferd_runtime::audit::Audit>>) -> Metrics {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "inferd_http_requests_total",
                "HTTP requests answered, by method, route and status code",
            ),
            &["method", "route", "status"],
        )
        .expect("static metric options are valid");
        let grpc_requests = IntCounterVec::new(
            Opts::new(
                "inferd_grpc_requests_total",
                "gRPC calls answered, by method and status code",
            ),
            &["method", "code"],
        )
        .expect("static metric options are valid");
        let audit = audit.map(|a| {
            Box::new(audit::AuditCollector::new(a)) as Box<dyn prometheus::core::Collector>
        });
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(grpc_requests.clone()),
            Box::new(models::ModelCollector::new(runtime)),
            Box::new(process::ProcessCollector::new()),
        ]
        .into_iter()
        .chain(audit)
        {
            registry
                .register(collector)
                .expect("metric names are registered once");
        }
        Metrics {
            registry,
            http_requests,
            grpc_requests,
        }
    }

    pub fn http_request(&self, method: &str, route: &str, status: axum::http::StatusCode) {
        self.http_requests
            .with_label_values(&[method, route, status.as_str()])
            .inc();
    }

    pub fn grpc_request(&self, method: &str, code: tonic::Code) {
        self.grpc_requests
            .with_label_values(&[method, code_name(code)])
            .inc();
    }

    /// The registry other parts of the server add their metrics to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!("cannot encode metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// gRPC status names as the label values (no formatting per request).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "Ok",
        Cancelled => "Cancelled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

async fn metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], metrics.render())
}

/// Serves `GET /metrics` until `shutdown` resolves; with `auth`, callers need the
/// `statistics` scope.
pub async fn serve_metrics(
    listener: TcpListener,
    listen: ListenSettings,
    metrics: Arc<Metrics>,
    auth: Option<Arc<crate::auth::Auth>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(self::metrics))
        .with_state(metrics)
        .layer(axum::middleware::from_fn_with_state(
            auth,
            crate::auth::http::layer,
        ));
    crate::listen::http::serve(listener, app, listen, HEADER_TIMEOUT, shutdown).await
}

/// A scrape's request headers must arrive within this.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
