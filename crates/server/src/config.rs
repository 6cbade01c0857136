//! Settings and answers both protocol front ends share, so HTTP and gRPC cannot disagree.

use std::sync::Arc;

use inferd_runtime::Runtime;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest HTTP request body or gRPC message accepted.
    pub max_message_bytes: usize,
    /// Ready only when every model that should load is ready (Triton's default); otherwise
    /// ready once loading has finished, whatever failed.
    pub strict_readiness: bool,
    /// The stream consumers of this server, listed at `GET /v2/streams`.
    pub streams: Option<Arc<dyn StreamsView>>,
    /// Registered system shared memory regions (refused unless `--allow-client-shm`); one set
    /// for both protocols, as a client may register over one and infer over the other.
    pub shared_memory: Arc<crate::shm::SharedMemory>,
}

/// What `GET /v2/streams` shows: implemented by the stream front end.
pub trait StreamsView: Send + Sync + std::fmt::Debug {
    /// `{"streams": [{"name", "state", "lag", ...}]}`.
    fn status(&self) -> serde_json::Value;
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_message_bytes: 64 << 20,
            strict_readiness: true,
            streams: None,
            shared_memory: Arc::default(),
        }
    }
}

pub const SERVER_NAME: &str = "inferd";
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Protocol extensions both front ends implement.
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
    "statistics",
    "logging",
    "trace",
    "system_shared_memory",
];

/// Server readiness under `config`, with what is not ready and why.
pub fn readiness(runtime: &Runtime, config: &ServerConfig) -> (bool, Vec<String>) {
    let r = runtime.readiness();
    let ready = if config.strict_readiness {
        r.ready
    } else {
        !r.loading && !r.draining
    };
    (ready, r.not_ready)
}
