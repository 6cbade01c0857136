//! Inference responses: JSON, with binary outputs after the JSON when asked for. Binary outputs
//! go to the socket as the buffers the backend produced (a body of several chunks, written
//! with vectored writes), not copied into one response buffer.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use inferd_runtime::{InferResponse, RequestContext};
use serde::Serialize;

use super::HEADER_LENGTH;
use super::decode::ResponseFormat;
use super::json_data::JsonData;
use crate::shm::OutputRegions;

#[derive(Serialize)]
struct ResponseJson<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    outputs: Vec<OutputJson<'a>>,
}

#[derive(Serialize)]
struct OutputJson<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    // Only binary outputs carry parameters: perf_analyzer rejects a parameters object on a JSON
    // output that lacks binary_data_size.
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData>,
}

#[derive(Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

/// A body of ready chunks.
struct Chunks {
    chunks: VecDeque<Bytes>,
    left: u64,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let next = self.chunks.pop_front();
        if let Some(chunk) = &next {
            self.left -= chunk.len() as u64;
        }
        Poll::Ready(next.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// Where an answer came from, as the `x-inferd-route` header says it: `<model>/<version>`.
pub const ROUTE_HEADER: &str = "x-inferd-route";

pub fn response(
    context: &RequestContext,
    response: &InferResponse,
    format: &ResponseFormat,
    shm: &OutputRegions,
) -> Response {
    let mut answer = body(context, response, format, shm);
    if let Ok(route) = HeaderValue::from_str(&format!(
        "{}/{}",
        response.model_name, response.model_version
    )) {
        answer
            .headers_mut()
            .insert(header::HeaderName::from_static(ROUTE_HEADER), route);
    }
    answer
}

/// The JSON answer with every output's data in the JSON (no binary part): for stream messages.
pub fn json_only(context: &RequestContext, response: &InferResponse) -> Vec<u8> {
    let mut binary = VecDeque::new();
    let none = OutputRegions::default();
    head(
        context,
        response,
        &ResponseFormat::default(),
        &none,
        &mut binary,
    )
}

fn body(
    context: &RequestContext,
    response: &InferResponse,
    format: &ResponseFormat,
    shm: &OutputRegions,
) -> Response {
    let mut binary = VecDeque::new();
    let head = head(context, response, format, shm, &mut binary);
    if binary.is_empty() {
        return (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            head,
        )
            .into_response();
    }
    let header_len = head.len();
    binary.push_front(Bytes::from(head));
    let left = binary.iter().map(|c| c.len() as u64).sum();
    let body = Body::new(Chunks {
        chunks: binary,
        left,
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(header_len),
            ),
        ],
        body,
    )
        .into_response()
}

/// The JSON part of an answer; the chunks of outputs sent binary go to `binary`. Outputs
/// written to shared memory carry only their name, datatype and shape.
fn head(
    context: &RequestContext,
    response: &InferResponse,
    format: &ResponseFormat,
    shm: &OutputRegions,
    binary: &mut VecDeque<Bytes>,
) -> Vec<u8> {
    let outputs = response
        .outputs
        .iter()
        .map(|o| {
            if shm.get(&o.name).is_some() {
                return OutputJson {
                    name: &o.name,
                    datatype: o.tensor.datatype().as_str(),
                    shape: o.tensor.shape(),
                    parameters: None,
                    data: None,
                };
            }
            let is_binary = format.is_binary(&o.name);
            if is_binary {
                binary.extend(o.tensor.chunks().iter().cloned());
            }
            OutputJson {
                name: &o.name,
                datatype: o.tensor.datatype().as_str(),
                shape: o.tensor.shape(),
                parameters: is_binary.then(|| BinaryParameters {
                    binary_data_size: o.tensor.byte_len(),
                }),
                data: (!is_binary).then(|| JsonData::of(&o.tensor)),
            }
        })
        .collect();
    let json = ResponseJson {
        model_name: &response.model_name,
        model_version: response.model_version.to_string(),
        id: context.response_id(),
        outputs,
    };
    let mut head = Vec::with_capacity(256);
    // Writing to a Vec cannot fail, and every field serializes infallibly.
    let _ = serde_json::to_writer(&mut head, &json);
    head
}
