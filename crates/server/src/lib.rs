//! Protocol front ends. They turn wire formats into the runtime's requests and back, enforce
//! limits, and never know which backend runs a model.

mod access;
pub mod auth;
mod config;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod grpc;
mod http;
pub mod listen;
pub mod messages;
pub(crate) mod metrics;
mod model_control;
mod model_info;
mod pipeline;
mod settings;
pub mod shm;
mod telemetry;
mod v1;
mod v2;

#[allow(clippy::all, clippy::pedantic)]
pub(crate) mod pb {
    tonic::include_proto!("inference");
}

pub use access::{ACCESS_TARGET, AccessLog};
pub use config::{ServerConfig, StreamsView};
pub use error::ApiError;
pub use grpc::client::{Described, GrpcClient};
pub use grpc::serve_grpc;
pub use http::router;
pub use listen::http::serve as serve_http;
pub use listen::{ClientAuth, ListenSettings, PeerInfo, Tls, TlsSettings};
pub use metrics::{Metrics, serve_metrics};
pub use pipeline::Pipeline;
pub use telemetry::{LogControl, TRACE_TARGET, Telemetry};
