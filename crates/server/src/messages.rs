//! Inference requests carried as broker messages (the stream front end, crates/streams): a V2
//! request in JSON or as a protobuf `ModelInferRequest`, run through the same pipeline as HTTP
//! and gRPC requests (so spans, the access log, metrics and audit apply), answered in the
//! encoding it came in.

use bytes::Bytes;
use inferd_runtime::{ErrorKind, Protocol, RequestContext, Target};
use opentelemetry::propagation::Extractor;
use prost::Message;

use crate::pipeline::{Decoded, Pipeline, Rejected};
use crate::{ApiError, pb};

/// How a message's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The V2 REST request / response JSON.
    Json,
    /// gRPC's `ModelInferRequest` / `ModelInferResponse`.
    Protobuf,
}

impl Encoding {
    /// A stream's `format` setting.
    pub fn parse(text: &str) -> Option<Encoding> {
        match text {
            "json" => Some(Encoding::Json),
            "protobuf" | "proto" => Some(Encoding::Protobuf),
            _ => None,
        }
    }

    /// The value of a `seldon-infer-type` header (`json/inferModelRequest`,
    /// `proto/InferModelRequest`), or of `content-type`.
    pub fn from_header(value: &str) -> Option<Encoding> {
        let value = value.trim().to_ascii_lowercase();
        if value.starts_with("json") || value == "application/json" {
            Some(Encoding::Json)
        } else if value.starts_with("proto")
            || value == "application/x-protobuf"
            || value == "application/protobuf"
        {
            Some(Encoding::Protobuf)
        } else {
            None
        }
    }

    /// The `seldon-infer-type` of an answer in this encoding.
    pub fn response_type(self) -> &'static str {
        match self {
            Encoding::Json => "json/inferModelResponse",
            Encoding::Protobuf => "proto/InferModelResponse",
        }
    }
}

/// A message's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub model: String,
    pub version: String,
    /// The request's id: the one in the message, else one made up.
    pub id: String,
    pub traceparent: String,
    pub payload: Vec<u8>,
}

/// Why a message was not answered.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: ApiError,
}

impl Failure {
    /// Worth trying again later (the model's queue is full, or it is loading) rather than a
    /// dead letter.
    pub fn is_transient(&self) -> bool {
        self.error.kind == ErrorKind::Unavailable
    }
}

/// What the message names no model for: no target given, and no protobuf `model_name`.
const NO_MODEL: &str = "the message names no model: the stream sets no 'model' and the message \
                        has no inferd-model (or mlserver-model) header";

/// Runs one message as `principal` (the stream, `stream:<name>`) for `target`, or when that is
/// `None` for the model a protobuf request names. `headers` carry the caller's `traceparent`.
pub async fn infer(
    pipeline: &Pipeline,
    principal: &str,
    target: Option<Target>,
    headers: &(dyn Extractor + Sync),
    encoding: Encoding,
    payload: Bytes,
) -> Result<Answer, Failure> {
    let refuse = |message: String| Failure {
        error: ApiError::bad_request(message),
    };
    // A protobuf request is decoded once, before the pipeline: it may name the model.
    let (target, wire) = match encoding {
        Encoding::Json => (target.ok_or_else(|| refuse(NO_MODEL.into()))?, None),
        Encoding::Protobuf => {
            let wire = pb::ModelInferRequest::decode(payload.clone())
                .map_err(|e| format!("malformed ModelInferRequest protobuf: {e}"));
            let named = wire.as_ref().ok().filter(|w| !w.model_name.is_empty());
            let target = match (target, named) {
                (Some(target), _) => target,
                (None, Some(w)) => Target::new(w.model_name.clone(), Some(&w.model_version)),
                (None, None) => return Err(refuse(wire.err().unwrap_or(NO_MODEL.into()))),
            };
            (target, Some(wire))
        }
    };
    let decode = async move {
        match wire {
            None => crate::v2::decode::request(&[payload], None).map(|d| Decoded {
                request: d.request,
                id: d.id,
                format: (),
                shm: d.shm,
            }),
            Some(wire) => {
                let wire = wire.map_err(|e| Rejected::from(ApiError::bad_request(e)))?;
                crate::grpc::convert::request(wire).map(|d| Decoded {
                    request: d.request,
                    id: d.id,
                    format: (),
                    shm: d.shm,
                })
            }
        }
    };
    let encode = |context: &RequestContext,
                  response: inferd_runtime::InferResponse,
                  (),
                  shm: &crate::shm::OutputRegions| {
        let (model, version) = (response.model_name.clone(), response.model_version);
        let payload = match encoding {
            Encoding::Json => crate::v2::encode::json_only(context, &response),
            // Raw contents, as Triton always answers.
            Encoding::Protobuf => {
                crate::grpc::convert::response(context, response, shm).encode_to_vec()
            }
        };
        Answer {
            model,
            version: version.to_string(),
            id: context.id.clone(),
            traceparent: crate::telemetry::traceparent(context),
            payload,
        }
    };
    let access = crate::auth::Access {
        principal: None,
        service: Some(principal.to_string()),
    };
    pipeline
        .infer(
            Protocol::Stream,
            target,
            Some(&access),
            headers,
            decode,
            encode,
        )
        .await
        .map_err(|error| Failure { error })
}
