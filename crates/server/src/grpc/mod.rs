//! The gRPC front end: `inference.GRPCInferenceService` (Triton's wire format) and
//! `grpc.health.v1.Health`, on the same runtime as HTTP.

pub mod client;
pub(crate) mod convert;
mod count;
mod health;
mod limit;
mod service;
mod shm;

use std::future::Future;
use std::sync::Arc;

use inferd_runtime::Runtime;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;

/// HTTP/2 streams (concurrent calls) one connection may have open.
pub const MAX_STREAMS: u32 = 1024;

use crate::auth::Auth;
use crate::listen::{self, ListenSettings};
use crate::pb;
use crate::pipeline::Pipeline;
use crate::{Metrics, ServerConfig, Telemetry};

/// HTTP/2 flow-control windows (see the note where they are set).
const STREAM_WINDOW: u32 = 256 << 10;
const CONNECTION_WINDOW: u32 = 8 << 20;

/// Serves gRPC on `listener` until `shutdown` resolves, then lets in-flight calls finish.
#[allow(clippy::too_many_arguments)]
pub async fn serve_grpc(
    listener: TcpListener,
    listen: ListenSettings,
    runtime: Arc<Runtime>,
    config: ServerConfig,
    metrics: Arc<Metrics>,
    telemetry: Arc<Telemetry>,
    auth: Option<Arc<Auth>>,
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
    // Our own layer enforces the limit on what arrives (RESOURCE_EXHAUSTED); tonic's catches
    // a compressed message that inflates past it.
    .max_decoding_message_size(limit)
    .max_encoding_message_size(usize::MAX)
    // Compressed requests, gzip or deflate. Answers stay plain, as Triton's by default: every
    // gRPC client advertises gzip in grpc-accept-encoding, and compressing each answer for it
    // would cost CPU on every call that never asked.
    .accept_compressed(CompressionEncoding::Gzip)
    .accept_compressed(CompressionEncoding::Deflate);
    let health = tonic_health::pb::health_server::HealthServer::new(health::HealthService::new(
        runtime, config,
    ));
    let incoming =
        ReceiverStream::new(listen::incoming(listener, listen)).map(Ok::<_, std::io::Error>);
    tonic::transport::Server::builder()
        // A client gets this many calls at once on one connection (HTTP/2 streams).
        .max_concurrent_streams(Some(MAX_STREAMS))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(60)))
        // h2 closes a connection (ENHANCE_YOUR_CALM, "too_many_data_frames") when the small
        // DATA frames it buffers unread cost more than half the connection window. A stream
        // of small requests that the server is pacing (STREAM_IN_FLIGHT) fills its stream
        // window with them: a smaller stream window and a larger connection window keep that
        // overhead under the budget for requests down to ~20 bytes.
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .layer(count::CountLayer::new(metrics))
        .layer(crate::auth::grpc::AuthLayer::new(auth))
        .layer(limit::MessageLimitLayer::new(limit))
        .add_service(inference)
        .add_service(health)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| format!("gRPC server failed: {e}"))
}
