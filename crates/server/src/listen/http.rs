//! Serving an axum router over [`incoming`](super::incoming) connections with hyper: HTTP/1.1,
//! a deadline for each request's headers (slow or idle clients are closed), graceful shutdown.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower_service::Service;

use super::{ListenSettings, incoming};

/// Serves `app` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ListenSettings,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut conns = incoming(listener, settings);
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            conn = conns.recv() => match conn {
                Some(c) => c,
                None => break,
            },
            _ = &mut shutdown => break,
        };
        let peer = conn.peer.clone();
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(peer.clone());
            app.clone().call(request.map(axum::body::Body::new))
        });
        let served = builder.serve_connection(TokioIo::new(conn), service);
        let watched = graceful.watch(served);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!("HTTP connection ended: {e}");
            }
        });
    }
    drop(conns);
    graceful.shutdown().await;
    Ok(())
}
