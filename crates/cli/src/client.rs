//! The `inferd` subcommands' client of a running server: JSON calls and V2 inference with the
//! binary tensor extension, over the runtime's HTTP client.

use bytes::Bytes;
use inferd_core::{NamedTensor, Tensor};
use inferd_runtime::http_client::HttpClient;
pub use inferd_runtime::http_client::Method;
use serde_json::{Value, json};

/// An inference's answer.
pub struct Answered {
    pub version: String,
    pub outputs: Vec<NamedTensor>,
}

pub struct Client {
    http: HttpClient,
    /// `Authorization` for a server with `--auth`: the API key or JWT in `INFERD_TOKEN`.
    authorization: Option<String>,
}

/// Where the subcommands find their credential (never a flag: flags show in `ps`).
pub const TOKEN_ENV: &str = "INFERD_TOKEN";

impl Client {
    pub fn new(url: &str) -> Result<Client, String> {
        let http = HttpClient::new(url).map_err(|e| format!("--url {e}"))?;
        let authorization = std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| format!("Bearer {}", t.trim()));
        Ok(Client {
            http,
            authorization,
        })
    }

    fn headers(&self, mut headers: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
        if let Some(a) = &self.authorization {
            headers.push(("authorization", a.clone()));
        }
        headers
    }

    /// One inference with the binary tensor extension both ways; the outputs.
    pub async fn infer_binary(
        &self,
        path: &str,
        inputs: &[NamedTensor],
    ) -> Result<Vec<NamedTensor>, String> {
        self.infer(path, inputs).await.map(|a| a.outputs)
    }

    /// Like [`Client::infer_binary`], with the answering version and the HTTP status of a
    /// refusal (for retries).
    pub async fn infer(&self, path: &str, inputs: &[NamedTensor]) -> Result<Answered, String> {
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
        let headers = self.headers(vec![(
            "inference-header-content-length",
            header.len().to_string(),
        )]);
        let answer = self
            .http
            .send(Method::POST, path, &headers, Bytes::from(body))
            .await?;
        let (status, headers, answer) = (answer.status, answer.headers, answer.body);
        let json_len = headers
            .get("inference-header-content-length")
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .unwrap_or(answer.len())
            .min(answer.len());
        let head: Value = serde_json::from_slice(&answer[..json_len])
            .map_err(|e| format!("the answer is not V2 JSON: {e}"))?;
        if status != 200 {
            return Err(format!(
                "{status}: {}",
                head["error"].as_str().unwrap_or_default()
            ));
        }
        let version = head["model_version"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut at = json_len;
        let mut outputs = Vec::new();
        for o in head["outputs"].as_array().into_iter().flatten() {
            let size = o["parameters"]["binary_data_size"].as_u64().unwrap_or(0) as usize;
            let datatype = crate::wire::datatype(o)?;
            let shape = crate::wire::shape(o);
            let end = (at + size).min(answer.len());
            let tensor = Tensor::from_wire(datatype, shape, vec![answer.slice(at..end)])?;
            at = end;
            outputs.push(NamedTensor {
                name: o["name"].as_str().unwrap_or_default().to_string(),
                tensor,
            });
        }
        Ok(Answered { version, outputs })
    }

    /// Sends one request; answers the status and the JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let headers = self.headers(vec![("content-type", "application/json".to_string())]);
        let answer = self
            .http
            .send(method, path, &headers, Bytes::from(bytes))
            .await?;
        let body = answer.body;
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        Ok((answer.status, value))
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
