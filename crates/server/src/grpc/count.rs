//! Counts gRPC calls by method and status code for the metrics. Handlers answer errors as
//! trailers-only responses, so the code is in the response headers; a response without it
//! carries its status in the trailers, which for these services means OK.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::Metrics;

#[derive(Clone)]
pub struct CountLayer {
    metrics: Arc<Metrics>,
}

impl CountLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        CountLayer { metrics }
    }
}

impl<S> tower_layer::Layer<S> for CountLayer {
    type Service = Count<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Count {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// The RPC name for the label; any other path is "unknown", so clients cannot grow the label
/// set without bound.
fn known_method(path: &str) -> &'static str {
    const METHODS: &[&str] = &[
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelStreamInfer",
        "ModelConfig",
        "ModelStatistics",
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
        "Check",
        "Watch",
    ];
    let name = path.rsplit('/').next().unwrap_or_default();
    METHODS
        .iter()
        .find(|m| **m == name)
        .copied()
        .unwrap_or("unknown")
}

#[derive(Clone)]
pub struct Count<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower_service::Service<http::Request<B>> for Count<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = known_method(request.uri().path());
        let metrics = Arc::clone(&self.metrics);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or(tonic::Code::Ok, tonic::Code::from);
            metrics.grpc_request(method, code);
            Ok(response)
        })
    }
}
