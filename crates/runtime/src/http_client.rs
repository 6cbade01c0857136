//! A small HTTP/1.1 client over one kept-alive connection: the audit sink and the MLflow model
//! source use it, and the `inferd` subcommands that talk to a running server. `https://` is
//! TLS (rustls on ring) trusting the system's roots plus the PEM certificates in
//! `$INFERD_CA_CERT` (a private CA, a self-signed server).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

pub use hyper::{HeaderMap, Method};

/// Where a client finds the CA certificates (PEM) it trusts beyond the system's.
pub const CA_CERT_ENV: &str = "INFERD_CA_CERT";

/// An `http://host:port` or `https://host:port` server; one connection, reopened when it
/// breaks.
pub struct HttpClient {
    authority: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    connection: tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The client TLS settings: system roots, then `$INFERD_CA_CERT`.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = std::env::var_os(CA_CERT_ENV).filter(|p| !p.is_empty()) {
        let shown = std::path::Path::new(&path).display().to_string();
        let pem = std::fs::read(&path).map_err(|e| format!("{CA_CERT_ENV}={shown}: {e}"))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("{CA_CERT_ENV}={shown}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("{CA_CERT_ENV}={shown}: {e}"))?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An answer: status, headers and the whole body.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpClient {
    /// `url` is `http://host:port`, optionally with a path (ignored here: requests name theirs).
    pub fn new(url: &str) -> Result<HttpClient, String> {
        let (rest, secure) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => {
                return Err(format!(
                    "{url}: give an http:// or https:// URL, e.g. http://127.0.0.1:8000"
                ));
            }
        };
        let authority = rest.split('/').next().unwrap_or_default().to_string();
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let tls = match secure {
            false => None,
            true => {
                // host:port, [v6]:port or host alone.
                let host = match authority.rsplit_once(':') {
                    Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
                    _ => authority.as_str(),
                };
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name =
                    ServerName::try_from(host.to_string()).map_err(|e| format!("{url}: {e}"))?;
                let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config()?));
                Some((connector, name))
            }
        };
        let authority = match (secure, authority.contains(':') && !authority.ends_with(']')) {
            (true, false) => format!("{authority}:443"),
            (false, false) => format!("{authority}:80"),
            _ => authority,
        };
        Ok(HttpClient {
            authority,
            tls,
            connection: tokio::sync::Mutex::new(None),
        })
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, String> {
        let mut connection = self.connection.lock().await;
        if connection.as_ref().is_none_or(|c| c.is_closed()) {
            let stream = tokio::net::TcpStream::connect(&self.authority)
                .await
                .map_err(|e| format!("cannot reach {}: {e}", self.authority))?;
            let _ = stream.set_nodelay(true);
            let stream: Box<dyn Io> = match &self.tls {
                None => Box::new(stream),
                Some((connector, name)) => Box::new(
                    connector
                        .connect(name.clone(), stream)
                        .await
                        .map_err(|e| format!("TLS with {} failed: {e}", self.authority))?,
                ),
            };
            let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake with {} failed: {e}", self.authority))?;
            tokio::spawn(async move {
                let _ = driver.await;
            });
            *connection = Some(sender);
        }
        let Some(sender) = connection.as_mut() else {
            return Err("no connection".into());
        };
        if let Err(e) = sender.ready().await {
            *connection = None;
            return Err(format!("the connection to {} failed: {e}", self.authority));
        }
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(e) => {
                *connection = None;
                return Err(format!("request to {} failed: {e}", self.authority));
            }
        };
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer from {} failed: {e}", self.authority))?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}
