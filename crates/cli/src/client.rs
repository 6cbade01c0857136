//! A small HTTP/1.1 client for the `inferd` subcommands that talk to a running server.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use inferd_core::{DataType, NamedTensor, Tensor};
use serde_json::{Value, json};

/// A server's base URL, `http://host:port`; one connection, kept open between requests.
pub struct Client {
    authority: String,
    connection: tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>,
}

impl Client {
    pub fn new(url: &str) -> Result<Client, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("--url {url}: give an http:// URL, e.g. http://127.0.0.1:8000")
        })?;
        let authority = rest.trim_end_matches('/').to_string();
        if authority.is_empty() || authority.contains('/') {
            return Err(format!(
                "--url {url}: give the server's address only, e.g. http://127.0.0.1:8000"
            ));
        }
        Ok(Client {
            authority,
            connection: tokio::sync::Mutex::new(None),
        })
    }

    /// Sends one request: status, headers and body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<(u16, hyper::HeaderMap, Bytes), String> {
        let mut connection = self.connection.lock().await;
        if connection.as_ref().is_none_or(|c| c.is_closed()) {
            let stream = tokio::net::TcpStream::connect(&self.authority)
                .await
                .map_err(|e| format!("cannot reach inferd at {}: {e}", self.authority))?;
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
        sender
            .ready()
            .await
            .map_err(|e| format!("the connection to {} failed: {e}", self.authority))?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request to {} failed: {e}", self.authority))?;
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer failed: {e}"))?
            .to_bytes();
        Ok((status, headers, body))
    }

    /// One inference with the binary tensor extension both ways; the outputs.
    pub async fn infer_binary(
        &self,
        path: &str,
        inputs: &[NamedTensor],
    ) -> Result<Vec<NamedTensor>, String> {
        let header = json!({
            "inputs": inputs.iter().map(|t| json!({
                "name": t.name, "datatype": t.tensor.datatype().as_str(), "shape": t.tensor.shape(),
                "parameters": {"binary_data_size": t.tensor.byte_len()},
            })).collect::<Vec<_>>(),
            "parameters": {"binary_data_output": true},
        })
        .to_string();
        let mut body = header.clone().into_bytes();
        for t in inputs {
            body.extend_from_slice(&t.tensor.contiguous());
        }
        let (status, headers, answer) = self
            .send(
                Method::POST,
                path,
                &[("inference-header-content-length", header.len().to_string())],
                Bytes::from(body),
            )
            .await?;
        let json_len = headers
            .get("inference-header-content-length")
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .unwrap_or(answer.len())
            .min(answer.len());
        let head: Value = serde_json::from_slice(&answer[..json_len])
            .map_err(|e| format!("the answer is not V2 JSON: {e}"))?;
        if status != 200 {
            return Err(format!("{status}: {}", head["error"].as_str().unwrap_or_default()));
        }
        let mut at = json_len;
        let mut outputs = Vec::new();
        for o in head["outputs"].as_array().into_iter().flatten() {
            let size = o["parameters"]["binary_data_size"].as_u64().unwrap_or(0) as usize;
            let datatype: DataType = o["datatype"].as_str().unwrap_or_default().parse().map_err(|e| format!("{e}"))?;
            let shape = o["shape"]
                .as_array()
                .map(|a| a.iter().filter_map(|d| d.as_u64().map(|d| d as usize)).collect())
                .unwrap_or_default();
            let end = (at + size).min(answer.len());
            let tensor = Tensor::from_wire(datatype, shape, vec![answer.slice(at..end)])?;
            at = end;
            outputs.push(NamedTensor {
                name: o["name"].as_str().unwrap_or_default().to_string(),
                tensor,
            });
        }
        Ok(outputs)
    }

    /// Sends one request; answers the status and the JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, _, body) = self
            .send(
                method,
                path,
                &[("content-type", "application/json".to_string())],
                Bytes::from(bytes),
            )
            .await?;
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        Ok((status, value))
    }

    /// Like [`Client::call`], but an error status becomes the server's error message.
    pub async fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let (status, value) = self.call(method, path, body).await?;
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        Err(format!("{status}: {message}"))
    }
}
