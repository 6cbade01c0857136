//! A client of `inference.GRPCInferenceService` for inferd's own commands (`inferd batch --url
//! grpc://host:8001`): one HTTP/2 connection (hyper), many calls at once on it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use inferd_core::{NamedTensor, Tensor, TensorSpec};

use crate::pb;
use crate::pb::grpc_inference_service_client::GrpcInferenceServiceClient;

/// One HTTP/2 connection as the tower service tonic's client calls.
#[derive(Clone)]
struct H2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower_service::Service<http::Request<tonic::body::Body>> for H2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

/// A model as the server describes it: `max_batch_size` and tensors (the batch dimension
/// left out when it batches, as config.toml writes them).
pub struct Described {
    pub max_batch_size: u32,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

#[derive(Clone)]
pub struct GrpcClient {
    client: GrpcInferenceServiceClient<H2>,
    authorization: Option<String>,
}

fn status(e: tonic::Status) -> String {
    format!("{:?}: {}", e.code(), e.message())
}

impl GrpcClient {
    /// Connects to `host:port` (plaintext HTTP/2). `authorization` goes with every call.
    pub async fn connect(
        address: &str,
        authorization: Option<String>,
    ) -> Result<GrpcClient, String> {
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("HTTP/2 handshake with {address} failed: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("gRPC client connection ended: {e}");
            }
        });
        let origin: http::Uri = format!("http://{address}")
            .parse()
            .map_err(|e| format!("'{address}': {e}"))?;
        let client = GrpcInferenceServiceClient::with_origin(H2(sender), origin)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        Ok(GrpcClient {
            client,
            authorization,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(a) = &self.authorization
            && let Ok(value) = a.parse()
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    pub async fn describe(&self, model: &str, version: &str) -> Result<Described, String> {
        let mut client = self.client.clone();
        let metadata = client
            .model_metadata(self.request(pb::ModelMetadataRequest {
                name: model.to_string(),
                version: version.to_string(),
            }))
            .await
            .map_err(status)?
            .into_inner();
        let config = client
            .model_config(self.request(pb::ModelConfigRequest {
                name: model.to_string(),
                version: version.to_string(),
            }))
            .await
            .map_err(status)?
            .into_inner()
            .config
            .unwrap_or_default();
        let max_batch_size = config.max_batch_size.max(0) as u32;
        let specs = |tensors: Vec<pb::model_metadata_response::TensorMetadata>| {
            tensors
                .into_iter()
                .map(|t| {
                    let dims = if max_batch_size > 0 {
                        t.shape.get(1..).unwrap_or_default().to_vec()
                    } else {
                        t.shape
                    };
                    let datatype = t.datatype.parse().map_err(|e| format!("{e}"))?;
                    Ok(TensorSpec::new(t.name, datatype, dims))
                })
                .collect::<Result<Vec<_>, String>>()
        };
        Ok(Described {
            max_batch_size,
            inputs: specs(metadata.inputs)?,
            outputs: specs(metadata.outputs)?,
        })
    }

    /// One inference with raw tensor contents both ways: the answering version and outputs.
    pub async fn infer(
        &self,
        model: &str,
        version: &str,
        id: &str,
        inputs: &[NamedTensor],
    ) -> Result<(String, Vec<NamedTensor>), String> {
        let request = pb::ModelInferRequest {
            model_name: model.to_string(),
            model_version: version.to_string(),
            id: id.to_string(),
            inputs: inputs
                .iter()
                .map(|t| pb::model_infer_request::InferInputTensor {
                    name: t.name.clone(),
                    datatype: t.tensor.datatype().as_str().to_string(),
                    shape: t.tensor.shape().iter().map(|d| *d as i64).collect(),
                    ..Default::default()
                })
                .collect(),
            raw_input_contents: inputs
                .iter()
                .map(|t| Bytes::from(t.tensor.contiguous().into_owned()))
                .collect(),
            ..Default::default()
        };
        let response = self
            .client
            .clone()
            .model_infer(self.request(request))
            .await
            .map_err(status)?
            .into_inner();
        let mut outputs = Vec::with_capacity(response.outputs.len());
        for (i, o) in response.outputs.into_iter().enumerate() {
            let datatype = o.datatype.parse().map_err(|e| format!("{e}"))?;
            let shape = o.shape.iter().map(|d| (*d).max(0) as usize).collect();
            let raw = response
                .raw_output_contents
                .get(i)
                .cloned()
                .ok_or_else(|| format!("output '{}' came without raw contents", o.name))?;
            outputs.push(NamedTensor {
                tensor: Tensor::from_wire(datatype, shape, vec![raw])?,
                name: o.name,
            });
        }
        Ok((response.model_version, outputs))
    }
}
