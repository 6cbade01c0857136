//! `inference.GRPCInferenceService`: each RPC translates and calls the runtime.

use std::pin::Pin;
use std::sync::Arc;

use inferd_runtime::{ModelState, Protocol, ResponseSink, Runtime, Target};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{convert, shm};
use crate::auth::Access;
use crate::config::{self, ServerConfig};
use crate::error::grpc_status;
use crate::model_control::{LoadParameter, config_override};
use crate::model_info::{ModelConfiguration, ModelMetadata, Statistics};
use crate::pb;
use crate::pb::grpc_inference_service_server::GrpcInferenceService;
use crate::pipeline::Pipeline;
use crate::shm::SharedMemory;
use crate::telemetry::Metadata;

/// Responses a stream may have waiting for the client before inference pauses.
const STREAM_BUFFER: usize = 64;

/// Requests of one stream in flight at once; beyond that the stream is not read (HTTP/2 flow
/// control then holds the client back), so a client that pipelines without bound cannot make
/// the server buffer without bound.
pub const STREAM_IN_FLIGHT: usize = 128;

pub struct InferenceService {
    runtime: Arc<Runtime>,
    config: Arc<ServerConfig>,
    pipeline: Pipeline,
}

impl InferenceService {
    pub fn new(runtime: Arc<Runtime>, config: Arc<ServerConfig>, pipeline: Pipeline) -> Self {
        InferenceService {
            runtime,
            config,
            pipeline,
        }
    }
}

fn version(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

/// One inference through the front-end pipeline.
async fn infer(
    pipeline: &Pipeline,
    metadata: &tonic::metadata::MetadataMap,
    access: Option<&Access>,
    shm: &SharedMemory,
    wire: pb::ModelInferRequest,
    responses: Option<ResponseSink>,
) -> Result<pb::ModelInferResponse, Status> {
    let target = Target::new(wire.model_name.clone(), version(&wire.model_version));
    let decode = async { convert::request_using(wire, Some(shm)) };
    pipeline
        .infer_streamed(
            Protocol::Grpc,
            target,
            access,
            &Metadata(metadata),
            decode,
            |context, response, (), shm| convert::response(context, response, shm),
            responses,
        )
        .await
        .map_err(Status::from)
}

/// One request of a stream: its answer, or for a decoupled model each of its responses as
/// the model makes them. Each response is held until the next one comes, so the last one
/// carries `triton_final_response`; a client that asked for an empty final response
/// (`triton_enable_empty_final_response`) gets one after them.
async fn stream_one(
    pipeline: &Pipeline,
    metadata: &tonic::metadata::MetadataMap,
    access: Option<&Access>,
    shm: &SharedMemory,
    wire: pb::ModelInferRequest,
    out: &tokio::sync::mpsc::Sender<Result<pb::ModelStreamInferResponse, Status>>,
) {
    let (id, name, version) = (
        wire.id.clone(),
        wire.model_name.clone(),
        wire.model_version.clone(),
    );
    let empty_final = matches!(
        wire.parameters
            .get(EMPTY_FINAL)
            .and_then(|p| p.parameter_choice.as_ref()),
        Some(pb::infer_parameter::ParameterChoice::BoolParam(true))
    );
    // False once the client went away (the stream was cancelled).
    let send = |response: pb::ModelInferResponse| async {
        let message = pb::ModelStreamInferResponse {
            error_message: String::new(),
            infer_response: Some(response),
        };
        out.send(Ok(message)).await.is_ok()
    };
    let (sink, mut partials) = tokio::sync::mpsc::channel(8);
    let call = infer(pipeline, metadata, access, shm, wire, Some(sink));
    tokio::pin!(call);
    let mut held: Option<pb::ModelInferResponse> = None;
    let result = loop {
        tokio::select! {
            Some(partial) = partials.recv() => {
                if let Some(previous) = held.replace(convert::partial(&id, partial))
                    && !send(flagged(previous, false)).await
                {
                    // Dropping the call tells the model no one listens: it stops.
                    return;
                }
            }
            result = &mut call => break result,
        }
    };
    // Responses the model made just before it ended.
    while let Ok(partial) = partials.try_recv() {
        if let Some(previous) = held.replace(convert::partial(&id, partial)) {
            send(flagged(previous, false)).await;
        }
    }
    match result {
        Ok(last) if last.parameters.contains_key(FINAL) => {
            if let Some(previous) = held {
                send(flagged(previous, !empty_final)).await;
            }
            if empty_final {
                send(last).await;
            }
        }
        Ok(answer) => {
            send(answer).await;
        }
        Err(status) => {
            if let Some(previous) = held {
                send(flagged(previous, false)).await;
            }
            let _ = out.send(Ok(stream_error(&status, id, name, version))).await;
        }
    }
}

/// The response parameter that marks a decoupled model's last response.
const FINAL: &str = "triton_final_response";
/// The request parameter that asks for an empty response after a decoupled model's last.
const EMPTY_FINAL: &str = "triton_enable_empty_final_response";

fn flagged(mut response: pb::ModelInferResponse, last: bool) -> pb::ModelInferResponse {
    response.parameters.insert(
        FINAL.into(),
        pb::InferParameter {
            parameter_choice: Some(pb::infer_parameter::ParameterChoice::BoolParam(last)),
        },
    );
    response
}

/// The `x-inferd-route` response metadata: `<model>/<version>` that answered.
fn routed(response: pb::ModelInferResponse) -> Response<pb::ModelInferResponse> {
    let route = format!("{}/{}", response.model_name, response.model_version);
    let mut answer = Response::new(response);
    if let Ok(value) = route.parse() {
        answer.metadata_mut().insert("x-inferd-route", value);
    }
    answer
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

/// Runs the requests of one sequence (same model, same `sequence_id`) of a stream one after
/// the other, in the order they came: each waits for the one before it to be answered. Other
/// requests run at once, as they come.
#[derive(Default)]
struct SequenceOrder {
    last: std::collections::HashMap<(String, String), tokio::sync::oneshot::Receiver<()>>,
}

/// A request's turn: what to wait for, and what to drop when answered.
struct Turn {
    after: Option<tokio::sync::oneshot::Receiver<()>>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Turn {
    async fn wait(self) -> Option<tokio::sync::oneshot::Sender<()>> {
        if let Some(after) = self.after {
            let _ = after.await;
        }
        self.done
    }
}

impl SequenceOrder {
    fn turn(&mut self, wire: &pb::ModelInferRequest) -> Turn {
        use pb::infer_parameter::ParameterChoice as P;
        let id = match wire
            .parameters
            .get("sequence_id")
            .and_then(|p| p.parameter_choice.as_ref())
        {
            Some(P::Int64Param(n)) if *n != 0 => n.to_string(),
            Some(P::Uint64Param(n)) if *n != 0 => n.to_string(),
            Some(P::StringParam(s)) if !s.is_empty() => format!("'{s}"),
            _ => {
                return Turn {
                    after: None,
                    done: None,
                };
            }
        };
        let key = (wire.model_name.clone(), id);
        let after = self.last.remove(&key);
        let (done, next) = tokio::sync::oneshot::channel();
        self.last.insert(key, next);
        // Forget sequences whose last request was answered, so the map stays small.
        if self.last.len() > 2 * STREAM_IN_FLIGHT {
            self.last.retain(|_, rx| {
                matches!(
                    rx.try_recv(),
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty)
                )
            });
        }
        Turn {
            after,
            done: Some(done),
        }
    }
}

type InferStream = Pin<Box<dyn Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn log_settings(
        &self,
        request: Request<pb::LogSettingsRequest>,
    ) -> Result<Response<pb::LogSettingsResponse>, Status> {
        use crate::settings::log::{self, Update, Value};
        use pb::log_settings_request::setting_value::ParameterChoice as In;
        use pb::log_settings_response::setting_value::ParameterChoice as Out;
        let telemetry = &self.pipeline.telemetry;
        let settings = request.into_inner().settings;
        if !settings.is_empty() {
            let mut update = Update::default();
            for (name, value) in settings {
                let value = match value.parameter_choice {
                    Some(In::BoolParam(b)) => Value::Bool(b),
                    Some(In::Uint32Param(v)) => Value::U32(v),
                    Some(In::StringParam(t)) => Value::Text(t),
                    None => continue,
                };
                update.set(&name, value)?;
            }
            update.apply(telemetry)?;
        }
        let settings = log::current(telemetry)
            .into_iter()
            .map(|(name, value)| {
                let choice = match value {
                    Value::Bool(b) => Out::BoolParam(b),
                    Value::U32(v) => Out::Uint32Param(v),
                    Value::Text(t) => Out::StringParam(t),
                };
                let value = pb::log_settings_response::SettingValue {
                    parameter_choice: Some(choice),
                };
                (name.to_string(), value)
            })
            .collect();
        Ok(Response::new(pb::LogSettingsResponse { settings }))
    }

    async fn system_shared_memory_status(
        &self,
        request: Request<pb::SystemSharedMemoryStatusRequest>,
    ) -> Result<Response<pb::SystemSharedMemoryStatusResponse>, Status> {
        shm::status(&self.config.shared_memory, request.into_inner()).map(Response::new)
    }

    async fn system_shared_memory_register(
        &self,
        request: Request<pb::SystemSharedMemoryRegisterRequest>,
    ) -> Result<Response<pb::SystemSharedMemoryRegisterResponse>, Status> {
        shm::register(&self.config.shared_memory, request.into_inner()).map(Response::new)
    }

    async fn system_shared_memory_unregister(
        &self,
        request: Request<pb::SystemSharedMemoryUnregisterRequest>,
    ) -> Result<Response<pb::SystemSharedMemoryUnregisterResponse>, Status> {
        shm::unregister(&self.config.shared_memory, request.into_inner()).map(Response::new)
    }

    async fn cuda_shared_memory_status(
        &self,
        _: Request<pb::CudaSharedMemoryStatusRequest>,
    ) -> Result<Response<pb::CudaSharedMemoryStatusResponse>, Status> {
        shm::cuda()
    }

    async fn cuda_shared_memory_register(
        &self,
        _: Request<pb::CudaSharedMemoryRegisterRequest>,
    ) -> Result<Response<pb::CudaSharedMemoryRegisterResponse>, Status> {
        shm::cuda()
    }

    async fn cuda_shared_memory_unregister(
        &self,
        _: Request<pb::CudaSharedMemoryUnregisterRequest>,
    ) -> Result<Response<pb::CudaSharedMemoryUnregisterResponse>, Status> {
        shm::cuda()
    }

    async fn trace_setting(
        &self,
        request: Request<pb::TraceSettingRequest>,
    ) -> Result<Response<pb::TraceSettingResponse>, Status> {
        use crate::settings::trace;
        let telemetry = &self.pipeline.telemetry;
        let request = request.into_inner();
        let updates: Vec<(String, Vec<String>)> = request
            .settings
            .into_iter()
            .map(|(name, value)| (name, value.value))
            .collect();
        trace::apply(telemetry, Some(&request.model_name), &updates)?;
        let settings = trace::current(telemetry)
            .into_iter()
            .map(|(name, value)| {
                let value = pb::trace_setting_response::SettingValue { value };
                (name.to_string(), value)
            })
            .collect();
        Ok(Response::new(pb::TraceSettingResponse { settings }))
    }

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
        let ready = self.runtime.ready(&r.name, version(&r.version)).is_ok();
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
        let view = self
            .runtime
            .describe(&r.name, version(&r.version))
            .map_err(|e| grpc_status(&e))?;
        Ok(Response::new(ModelMetadata::of(&view).into()))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let (metadata, extensions, wire) = request.into_parts();
        let access = extensions.get::<Access>();
        infer(
            &self.pipeline,
            &metadata,
            access,
            &self.config.shared_memory,
            wire,
            None,
        )
        .await
        .map(routed)
    }

    type ModelStreamInferStream = InferStream;

    /// Each request is answered by one response (a decoupled model's by 0 or more), in
    /// completion order, carrying its id; a bad
    /// request is answered with `error_message` and the stream goes on. At most
    /// [`STREAM_IN_FLIGHT`] requests of a stream run at once.
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let (metadata, extensions, mut inbound) = request.into_parts();
        let metadata = Arc::new(metadata);
        let access = Arc::new(extensions.get::<Access>().cloned());
        let pipeline = self.pipeline.clone();
        let shm = Arc::clone(&self.config.shared_memory);
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let slots = Arc::new(tokio::sync::Semaphore::new(STREAM_IN_FLIGHT));
        tokio::spawn(async move {
            let mut sequences = SequenceOrder::default();
            loop {
                // A slot before the next message is read: back-pressure, not buffering.
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let Some(next) = inbound.next().await else {
                    return;
                };
                let wire = match next {
                    Ok(wire) => wire,
                    // The transport failed or a message broke the limit: end the stream with it.
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let turn = sequences.turn(&wire);
                let (pipeline, metadata, access, shm, tx) = (
                    pipeline.clone(),
                    Arc::clone(&metadata),
                    Arc::clone(&access),
                    Arc::clone(&shm),
                    tx.clone(),
                );
                tokio::spawn(async move {
                    let done = turn.wait().await;
                    let access = access.as_ref().as_ref();
                    stream_one(&pipeline, &metadata, access, &shm, wire, &tx).await;
                    drop(done);
                    drop(slot);
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
        let view = self
            .runtime
            .describe(&r.name, version(&r.version))
            .map_err(|e| grpc_status(&e))?;
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(ModelConfiguration::of(&view.spec).into()),
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
        Ok(Response::new(Statistics::of(&rows).into()))
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
