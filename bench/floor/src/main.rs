//! The protocol floor: a V2 server that does only what the protocol itself needs (read the
//! request, parse its JSON header, answer with the input as the output) for one model, `echo`
//! (input `INPUT0`, output `OUTPUT0`, FP32, any length). Built from the same crates as inferd
//! (axum/hyper, tonic/prost, serde_json, tokio with a worker per core), so a benchmark can show how
//! far inferd is from what the protocol and the client allow on the same machine in the same run.
//!
//! `inferd-floor [--http-port 8000] [--grpc-port 8001]`; `/v2/models/echo/stats` and gRPC
//! ModelStatistics report the inference count, so CPU time per inference can be measured as
//! for inferd.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

#[allow(clippy::all, clippy::pedantic)]
mod pb {
    tonic::include_proto!("inference");
}

const MODEL: &str = "echo";
const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut http_port, mut grpc_port) = (8000u16, 8001u16);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or("a flag needs a value")?;
        match flag.as_str() {
            "--http-port" => http_port = value.parse()?,
            "--grpc-port" => grpc_port = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(http_port, grpc_port))
}

async fn serve(http_port: u16, grpc_port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let count = Arc::new(Counter::default());
    let app = Router::new()
        .route(
            "/v2",
            get(|| async { axum::Json(json!({"name": "inferd-floor", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]})) }),
        )
        .route("/v2/health/live", get(|| async { "" }))
        .route("/v2/health/ready", get(|| async { "" }))
        .route("/v2/models/echo", get(|| async { axum::Json(metadata()) }))
        .route("/v2/models/echo/ready", get(|| async { "" }))
        .route("/v2/models/echo/config", get(|| async { axum::Json(config()) }))
        .route("/v2/models/echo/stats", get(stats))
        .route("/v2/models/echo/infer", post(infer))
        .with_state(Arc::clone(&count));
    let http = tokio::net::TcpListener::bind(("127.0.0.1", http_port)).await?;
    let grpc = tokio::net::TcpListener::bind(("127.0.0.1", grpc_port)).await?;
    let incoming = tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
    let grpc = tonic::transport::Server::builder()
        .add_service(
            pb::grpc_inference_service_server::GrpcInferenceServiceServer::new(Echo(count)),
        )
        .serve_with_incoming(incoming);
    use axum::serve::ListenerExt;
    let http = http.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (a, b) = tokio::join!(axum::serve(http, app), grpc);
    a?;
    b?;
    Ok(())
}

fn metadata() -> Value {
    json!({"name": MODEL, "versions": ["1"], "platform": "floor",
           "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [-1]}],
           "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1]}]})
}

fn config() -> Value {
    json!({"name": MODEL, "platform": "floor", "backend": "floor", "max_batch_size": 0,
           "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
           "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [-1]}]})
}

async fn stats(State(count): State<Arc<Counter>>) -> axum::Json<Value> {
    axum::Json(
        json!({"model_stats": [{"name": MODEL, "version": "1", "inference_count": count.get()}]}),
    )
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(default, borrow)]
    id: Option<&'a str>,
    inputs: Vec<Input>,
}

#[derive(Deserialize)]
struct Input {
    shape: Vec<i64>,
    #[serde(default)]
    parameters: InputParameters,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize, Default)]
struct InputParameters {
    #[serde(default)]
    binary_data_size: Option<usize>,
}

fn bad(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}

/// Echoes the first input: binary in, binary out; JSON in, JSON out.
async fn infer(State(count): State<Arc<Counter>>, headers: HeaderMap, body: Bytes) -> Response {
    let split = headers
        .get(HEADER_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(body.len())
        .min(body.len());
    let request: Request = match serde_json::from_slice(&body[..split]) {
        Ok(r) => r,
        Err(e) => return bad(format!("malformed request: {e}")),
    };
    let Some(input) = request.inputs.first() else {
        return bad("no inputs".into());
    };
    count.add();
    let mut out = json!({"name": "OUTPUT0", "datatype": "FP32", "shape": input.shape});
    let answer = |outputs| json!({"model_name": MODEL, "model_version": "1", "id": request.id, "outputs": [outputs]});
    match (input.parameters.binary_data_size, &input.data) {
        (Some(size), _) if split + size <= body.len() => {
            out["parameters"] = json!({ "binary_data_size": size });
            let mut head = serde_json::to_vec(&answer(out)).unwrap_or_default();
            let head_len = head.len();
            head.extend_from_slice(&body[split..split + size]);
            (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    ),
                    (
                        header::HeaderName::from_static(HEADER_LENGTH),
                        HeaderValue::from(head_len),
                    ),
                ],
                head,
            )
                .into_response()
        }
        (None, Some(data)) => {
            out["data"] = data.clone();
            axum::Json(answer(out)).into_response()
        }
        _ => bad("input has neither data nor a fitting binary_data_size".into()),
    }
}

struct Echo(Arc<Counter>);

type Answer<T> = Result<tonic::Response<T>, tonic::Status>;

#[tonic::async_trait]
impl pb::grpc_inference_service_server::GrpcInferenceService for Echo {
    async fn server_live(
        &self,
        _: tonic::Request<pb::ServerLiveRequest>,
    ) -> Answer<pb::ServerLiveResponse> {
        Ok(tonic::Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: tonic::Request<pb::ServerReadyRequest>,
    ) -> Answer<pb::ServerReadyResponse> {
        Ok(tonic::Response::new(pb::ServerReadyResponse {
            ready: true,
        }))
    }

    async fn model_ready(
        &self,
        _: tonic::Request<pb::ModelReadyRequest>,
    ) -> Answer<pb::ModelReadyResponse> {
        Ok(tonic::Response::new(pb::ModelReadyResponse { ready: true }))
    }

    async fn server_metadata(
        &self,
        _: tonic::Request<pb::ServerMetadataRequest>,
    ) -> Answer<pb::ServerMetadataResponse> {
        Ok(tonic::Response::new(pb::ServerMetadataResponse {
            name: "inferd-floor".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec![],
        }))
    }

    async fn model_metadata(
        &self,
        _: tonic::Request<pb::ModelMetadataRequest>,
    ) -> Answer<pb::ModelMetadataResponse> {
        let tensor = |name: &str| pb::model_metadata_response::TensorMetadata {
            name: name.into(),
            datatype: "FP32".into(),
            shape: vec![-1],
        };
        Ok(tonic::Response::new(pb::ModelMetadataResponse {
            name: MODEL.into(),
            versions: vec!["1".into()],
            platform: "floor".into(),
            inputs: vec![tensor("INPUT0")],
            outputs: vec![tensor("OUTPUT0")],
        }))
    }

    async fn model_infer(
        &self,
        request: tonic::Request<pb::ModelInferRequest>,
    ) -> Answer<pb::ModelInferResponse> {
        let r = request.into_inner();
        self.0.add();
        let outputs = r
            .inputs
            .iter()
            .map(|i| pb::model_infer_response::InferOutputTensor {
                name: "OUTPUT0".into(),
                datatype: i.datatype.clone(),
                shape: i.shape.clone(),
                ..Default::default()
            })
            .collect();
        Ok(tonic::Response::new(pb::ModelInferResponse {
            model_name: MODEL.into(),
            model_version: "1".into(),
            id: r.id,
            outputs,
            raw_output_contents: r.raw_input_contents,
            ..Default::default()
        }))
    }

    type ModelStreamInferStream = std::pin::Pin<
        Box<
            dyn tokio_stream::Stream<Item = Result<pb::ModelStreamInferResponse, tonic::Status>>
                + Send,
        >,
    >;

    async fn model_stream_infer(
        &self,
        _: tonic::Request<tonic::Streaming<pb::ModelInferRequest>>,
    ) -> Answer<Self::ModelStreamInferStream> {
        Err(tonic::Status::unimplemented("the floor has no streaming"))
    }

    async fn model_config(
        &self,
        _: tonic::Request<pb::ModelConfigRequest>,
    ) -> Answer<pb::ModelConfigResponse> {
        let tensor_in = pb::ModelInput {
            name: "INPUT0".into(),
            data_type: pb::DataType::TypeFp32 as i32,
            dims: vec![-1],
            ..Default::default()
        };
        let tensor_out = pb::ModelOutput {
            name: "OUTPUT0".into(),
            data_type: pb::DataType::TypeFp32 as i32,
            dims: vec![-1],
            ..Default::default()
        };
        Ok(tonic::Response::new(pb::ModelConfigResponse {
            config: Some(pb::ModelConfig {
                name: MODEL.into(),
                platform: "floor".into(),
                backend: "floor".into(),
                input: vec![tensor_in],
                output: vec![tensor_out],
                ..Default::default()
            }),
        }))
    }

    async fn model_statistics(
        &self,
        _: tonic::Request<pb::ModelStatisticsRequest>,
    ) -> Answer<pb::ModelStatisticsResponse> {
        Ok(tonic::Response::new(pb::ModelStatisticsResponse {
            model_stats: vec![pb::ModelStatistics {
                name: MODEL.into(),
                version: "1".into(),
                inference_count: self.0.get(),
                ..Default::default()
            }],
        }))
    }

    async fn repository_index(
        &self,
        _: tonic::Request<pb::RepositoryIndexRequest>,
    ) -> Answer<pb::RepositoryIndexResponse> {
        Err(tonic::Status::unimplemented("the floor has one model"))
    }

    async fn repository_model_load(
        &self,
        _: tonic::Request<pb::RepositoryModelLoadRequest>,
    ) -> Answer<pb::RepositoryModelLoadResponse> {
        Err(tonic::Status::unimplemented("the floor has one model"))
    }

    async fn repository_model_unload(
        &self,
        _: tonic::Request<pb::RepositoryModelUnloadRequest>,
    ) -> Answer<pb::RepositoryModelUnloadResponse> {
        Err(tonic::Status::unimplemented("the floor has one model"))
    }

    async fn trace_setting(
        &self,
        _: tonic::Request<pb::TraceSettingRequest>,
    ) -> Answer<pb::TraceSettingResponse> {
        Err(tonic::Status::unimplemented("the floor does not trace"))
    }

    async fn log_settings(
        &self,
        _: tonic::Request<pb::LogSettingsRequest>,
    ) -> Answer<pb::LogSettingsResponse> {
        Err(tonic::Status::unimplemented("the floor does not log"))
    }

    async fn system_shared_memory_status(
        &self,
        _: tonic::Request<pb::SystemSharedMemoryStatusRequest>,
    ) -> Answer<pb::SystemSharedMemoryStatusResponse> {
        Err(tonic::Status::unimplemented(
            "the floor has no shared memory",
        ))
    }

    async fn system_shared_memory_register(
        &self,
        _: tonic::Request<pb::SystemSharedMemoryRegisterRequest>,
    ) -> Answer<pb::SystemSharedMemoryRegisterResponse> {
        Err(tonic::Status::unimplemented(
            "the floor has no shared memory",
        ))
    }

    async fn system_shared_memory_unregister(
        &self,
        _: tonic::Request<pb::SystemSharedMemoryUnregisterRequest>,
    ) -> Answer<pb::SystemSharedMemoryUnregisterResponse> {
        Err(tonic::Status::unimplemented(
            "the floor has no shared memory",
        ))
    }

    async fn cuda_shared_memory_status(
        &self,
        _: tonic::Request<pb::CudaSharedMemoryStatusRequest>,
    ) -> Answer<pb::CudaSharedMemoryStatusResponse> {
        Err(tonic::Status::unimplemented(
            "the floor has no shared memory",
        ))
    }

    async fn cuda_shared_memory_register(
        &self,
        _: tonic::Request<pb::CudaSharedMemoryRegisterRequest>,
    ) -> Answer<pb::CudaSharedMemoryRegisterResponse> {
        Err(tonic::Status::unimplemented(
            "the floor has no shared memory",
        ))
    }

    async fn cuda_shared_memory_unregister(
        &self,
        _: tonic::Request<pb::CudaSharedMemoryUnregisterRequest>,
    ) -> Answer<pb::CudaSharedMemoryUnregisterResponse> {
        Err(tonic::Status::unimplemented(
            "the floor has no shared memory",
        ))
    }
}
