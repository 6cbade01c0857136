//! The gRPC front end: `inference.GRPCInferenceService` (Triton's wire format) and
//! `grpc.health.v1.Health`, on the same runtime as HTTP.

mod convert;
mod count;
mod health;
mod limit;
mod service;

use std::future::Future;
use std::sync::Arc;

use inferd_runtime::Runtime;
use tokio::net::TcpListener;

use crate::pb;
use crate::pipeline::Pipeline;
use crate::{Metrics, ServerConfig, Telemetry};

/// Serves gRPC on `listener` until `shutdown` resolves, then lets in-flight calls finish.
pub async fn serve_grpc(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    config: ServerConfig,
    metrics: Arc<Metrics>,
    telemetry: Arc<Telemetry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let limit = config.max_message_bytes;
    let config = Arc::new(config);
    let inference = pb::grpc_inference_service_server::GrpcInferenceServiceServer::new(
        service::InferenceService::new(
            Arc::clone(&runtime),
            Arc::clone(&config),
            Pipeline {
                runtime: Arc::clone(&runtime),
                telemetry,
            },
        ),
    )
    // Our own layer enforces the limit with RESOURCE_EXHAUSTED; tonic's would say OUT_OF_RANGE.
    .max_decoding_message_size(usize::MAX)
    .max_encoding_message_size(usize::MAX);
    let health = tonic_health::pb::health_server::HealthServer::new(health::HealthService::new(
        runtime, config,
    ));
    // Small responses must not wait for Nagle's algorithm (the builder's tcp_nodelay only
    // applies to listeners tonic binds itself).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .layer(count::CountLayer::new(metrics))
        .layer(limit::MessageLimitLayer::new(limit))
        .add_service(inference)
        .add_service(health)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| format!("gRPC server failed: {e}"))
}
