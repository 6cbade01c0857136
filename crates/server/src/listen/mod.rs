//! Accepting connections for every front end: TCP, optionally TLS, a cap on open connections,
//! a deadline on handshakes, and who is at the other end ([`PeerInfo`]) for authentication.

mod conn;
pub mod http;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

pub use conn::Conn;
pub use tls::{ClientAuth, Tls, TlsSettings};

/// How a listener accepts.
#[derive(Clone)]
pub struct ListenSettings {
    pub tls: Option<Arc<Tls>>,
    /// Connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A TLS handshake (and, for HTTP, a request's headers) must arrive within this.
    pub handshake_timeout: Duration,
}

impl ListenSettings {
    pub fn plain() -> ListenSettings {
        ListenSettings {
            tls: None,
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Who a connection is from; in every request's extensions.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    pub remote: Option<SocketAddr>,
    /// The subject of the client's verified certificate (mTLS).
    pub subject: Option<Arc<str>>,
}

/// Accepts on `listener` until the receiver is dropped; handshakes run concurrently, so a
/// slow client holds up no one else.
pub fn incoming(listener: TcpListener, settings: ListenSettings) -> mpsc::Receiver<Conn> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&slots).acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = tx.closed() => return,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Small responses must not wait for Nagle's algorithm.
            let _ = tcp.set_nodelay(true);
            let Some(tls) = settings.tls.clone() else {
                let peer = PeerInfo {
                    remote: Some(remote),
                    subject: None,
                };
                if tx.send(Conn::plain(tcp, peer, permit)).await.is_err() {
                    return;
                }
                continue;
            };
            let (tx, deadline) = (tx.clone(), settings.handshake_timeout);
            tokio::spawn(async move {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let subject = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(tls::subject)
                            .map(Arc::from);
                        let peer = PeerInfo {
                            remote: Some(remote),
                            subject,
                        };
                        let _ = tx.send(Conn::tls(stream, peer, permit)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, "TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    rx
}
