use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use inferd_backend_tract::TractBackend;
use inferd_runtime::Runtime;
use inferd_server::HttpConfig;

use crate::logging::{self, LogFormat};
use crate::size::parse_size;

#[derive(Args)]
pub struct ServeArgs {
    /// Directory holding <model>/[config.toml] and <model>/<version>/model.onnx.
    #[arg(long, env = "INFERD_MODEL_REPOSITORY", value_name = "DIR")]
    model_repository: PathBuf,

    /// Address to listen on; 0.0.0.0 exposes the server to the network.
    #[arg(long, env = "INFERD_HOST", default_value = "127.0.0.1")]
    host: std::net::IpAddr,

    /// Port of the HTTP/REST endpoint (Open Inference Protocol).
    #[arg(long, env = "INFERD_HTTP_PORT", default_value_t = 8000)]
    http_port: u16,

    /// Largest request body accepted (e.g. 64MiB); larger requests get 413.
    #[arg(long, env = "INFERD_MAX_REQUEST_SIZE", default_value = "64MiB", value_parser = parse_size)]
    max_request_size: usize,

    /// Report ready only when every model in the repository loaded (like Triton). With false,
    /// ready once loading finished even if some models failed.
    #[arg(long, env = "INFERD_STRICT_READINESS", default_value_t = true, action = clap::ArgAction::Set)]
    strict_readiness: bool,

    /// Log line format; the level is set with INFERD_LOG (default info).
    #[arg(long, env = "INFERD_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

pub fn run(args: ServeArgs) -> Result<(), String> {
    logging::init(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("inferd")
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    if !args.model_repository.is_dir() {
        return Err(format!(
            "model repository {} is not a directory",
            args.model_repository.display()
        ));
    }
    let runtime = Arc::new(Runtime::new(
        &args.model_repository,
        vec![Arc::new(TractBackend)],
    ));
    let addr = SocketAddr::new(args.host, args.http_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let config = HttpConfig {
        max_body_bytes: args.max_request_size,
        strict_readiness: args.strict_readiness,
    };
    let app = inferd_server::router(Arc::clone(&runtime), config);
    tracing::info!(%addr, repository = %args.model_repository.display(), "HTTP endpoint listening");

    // Serve health and metadata while models load; readiness reports the loading state.
    let loader = Arc::clone(&runtime);
    tokio::spawn(async move {
        match loader.load_repository().await {
            Ok(()) => {
                let r = loader.readiness();
                if r.ready {
                    tracing::info!("all models loaded");
                } else {
                    tracing::warn!(not_ready = ?r.not_ready, "loading finished; some models are not ready");
                }
            }
            Err(e) => {
                tracing::error!(repository = %loader.repository().display(), "cannot read the model repository: {e}")
            }
        }
    });

    inferd_server::serve(listener, app, shutdown_signal())
        .await
        .map_err(|e| format!("HTTP server failed: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM; the server then finishes in-flight requests and exits.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
