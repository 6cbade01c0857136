//! A small HTTP/1.1 client over one kept-alive connection: the audit sink and the MLflow model
//! source use it, and the `inferd` subcommands that talk to a running server.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

pub use hyper::{HeaderMap, Method};

/// An `http://host:port` server; one connection, reopened when it breaks.
pub struct HttpClient {
    authority: String,
    connection: tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>,
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
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: give an http:// URL, e.g. http://127.0.0.1:8000"))?;
        let authority = rest.split('/').next().unwrap_or_default().to_string();
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(HttpClient {
            authority,
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
