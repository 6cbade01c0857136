//! `inference.GRPCInferenceService`: each RPC translates and calls the runtime.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use inferd_runtime::{ModelState, Runtime};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::pb::grpc_inference_service_server::GrpcInferenceService;
use super::{convert, model_config, pb, statistics};
use crate::Telemetry;
use crate::config::{self, ServerConfig};
use crate::error::grpc_status;
use crate::metrics::code_name;
use crate::model_control::{LoadParameter, config_override};
use crate::telemetry::{self, Metadata};

/// Responses a stream may have waiting for the client before inference pauses.
const STREAM_BUFFER: usize = 64;

pub struct InferenceService {
    runtime: Arc<Runtime>,
    config: Arc<ServerConfig>,
    telemetry: Arc<Telemetry>,
}

impl InferenceService {
    pub fn new(
        runtime: Arc<Runtime>,
        config: Arc<ServerConfig>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        InferenceService {
            runtime,
            config,
            telemetry,
        }
    }
}

fn version(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

/// One inference, in a request span (its log lines carry the id) and, when sampled, a trace
/// continuing the caller's `traceparent` metadata; answered in the access log.
async fn infer(
    runtime: &Runtime,
    telemetry: &Telemetry,
    metadata: &tonic::metadata::MetadataMap,
    wire: pb::ModelInferRequest,
) -> Result<pb::ModelInferResponse, Status> {
    let started = Instant::now();
    let (id, name) = (wire.id.clone(), wire.model_name.clone());
    let span = telemetry.request_span("grpc", &name);
    let id = telemetry.log_id(&span, &id);
    let trace = telemetry.trace("grpc", &name, &Metadata(metadata));
    let result = run(runtime, wire, trace.as_ref())
        .instrument(span.clone())
        .await;
    let _entered = span.enter();
    if telemetry.access_log() {
        let (code, version) = match &result {
            Ok(response) => (tonic::Code::Ok, response.model_version.as_str()),
            Err(status) => (status.code(), ""),
        };
        telemetry.access(&id, &name, version, code_name(code), started.elapsed());
    }
    result
}

async fn run(
    runtime: &Runtime,
    wire: pb::ModelInferRequest,
    trace: Option<&tracing::Span>,
) -> Result<pb::ModelInferResponse, Status> {
    let model = telemetry::within(telemetry::child(trace, "route"), || {
        runtime.get(&wire.model_name, version(&wire.model_version))
    })
    .map_err(|e| grpc_status(&e))?;
    let (mut request, raw) =
        telemetry::within(telemetry::child(trace, "decode"), || convert::request(wire))?;
    request.trace = trace.cloned();
    let response = model.infer(request).await.map_err(|e| grpc_status(&e))?;
    Ok(telemetry::within(telemetry::child(trace, "encode"), || {
        convert::response(response, raw)
    }))
}

/// A stream error answered in the stream: the error text, and the request's id and model so
/// the client can tell which request failed.
fn stream_error(
    status: &Status,
    id: String,
    model_name: String,
    model_version: String,
) -> pb::ModelStreamInferResponse {
    pb::ModelStreamInferResponse {
        error_message: status.message().to_string(),
        infer_response: Some(pb::ModelInferResponse {
            model_name,
            model_version,
            id,
            ..Default::default()
        }),
    }
}

type InferStream = Pin<Box<dyn Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        let (ready, _) = config::readiness(&self.runtime, &self.config);
        Ok(Response::new(pb::ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = request.get_ref();
        let ready = self.runtime.get(&r.name, version(&r.version)).is_ok();
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: config::SERVER_NAME.to_string(),
            version: config::SERVER_VERSION.to_string(),
            extensions: config::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = request.get_ref();
        let model = self
            .runtime
            .get(&r.name, version(&r.version))
            .map_err(|e| grpc_status(&e))?;
        let versions = self.runtime.ready_versions(&r.name);
        Ok(Response::new(model_config::metadata(
            model.spec(),
            &versions,
        )))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let (metadata, _, wire) = request.into_parts();
        infer(&self.runtime, &self.telemetry, &metadata, wire)
            .await
            .map(Response::new)
    }

    type ModelStreamInferStream = InferStream;

    /// Each request is answered by one response, in completion order, carrying its id; a bad
    /// request is answered with `error_message` and the stream goes on.
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let (metadata, _, mut inbound) = request.into_parts();
        let metadata = Arc::new(metadata);
        let runtime = Arc::clone(&self.runtime);
        let telemetry = Arc::clone(&self.telemetry);
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            while let Some(next) = inbound.next().await {
                let wire = match next {
                    Ok(wire) => wire,
                    // The transport failed or a message broke the limit: end the stream with it.
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let (runtime, telemetry, metadata, tx) = (
                    Arc::clone(&runtime),
                    Arc::clone(&telemetry),
                    Arc::clone(&metadata),
                    tx.clone(),
                );
                tokio::spawn(async move {
                    let (id, name, version) = (
                        wire.id.clone(),
                        wire.model_name.clone(),
                        wire.model_version.clone(),
                    );
                    let answer = match infer(&runtime, &telemetry, &metadata, wire).await {
                        Ok(response) => pb::ModelStreamInferResponse {
                            error_message: String::new(),
                            infer_response: Some(response),
                        },
                        Err(status) => stream_error(&status, id, name, version),
                    };
                    let _ = tx.send(Ok(answer)).await;
                });
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn model_config(
        &self,
        request: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let r = request.get_ref();
        let model = self
            .runtime
            .get(&r.name, version(&r.version))
            .map_err(|e| grpc_status(&e))?;
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(model_config::config(model.spec())),
        }))
    }

    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let r = request.get_ref();
        let rows = self
            .runtime
            .statistics(Some(&r.name), version(&r.version))
            .map_err(|e| grpc_status(&e))?;
        Ok(Response::new(statistics::response(&rows)))
    }

    async fn repository_index(
        &self,
        request: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        let ready_only = request.get_ref().ready;
        let models = self
            .runtime
            .index()
            .into_iter()
            .filter(|e| !ready_only || e.state == ModelState::Ready)
            .map(|e| pb::repository_index_response::ModelIndex {
                name: e.name,
                version: e.version.map(|v| v.to_string()).unwrap_or_default(),
                state: e.state.as_str().to_string(),
                reason: e.reason,
            })
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        use pb::model_repository_parameter::ParameterChoice;
        let request = request.into_inner();
        let parameters = request
            .parameters
            .into_iter()
            .map(|(key, value)| LoadParameter {
                key,
                string: match value.parameter_choice {
                    Some(ParameterChoice::StringParam(s)) => Some(s),
                    Some(ParameterChoice::BytesParam(b)) => String::from_utf8(b).ok(),
                    _ => None,
                },
            })
            .collect();
        let config = config_override(parameters).map_err(|e| grpc_status(&e))?;
        self.runtime
            .load_model(&request.model_name, config)
            .await
            .map_err(|e| grpc_status(&e))?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        self.runtime
            .unload_model(&request.get_ref().model_name)
            .await
            .map_err(|e| grpc_status(&e))?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}
