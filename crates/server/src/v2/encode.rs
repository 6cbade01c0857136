//! Inference responses: JSON, with binary outputs appended after the JSON when asked for.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use inferd_runtime::InferResponse;
use serde::Serialize;

use super::HEADER_LENGTH;
use super::decode::ResponseFormat;
use super::json_data::JsonData;

#[derive(Serialize)]
struct ResponseJson<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
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
    data: Option<JsonData<'a>>,
}

#[derive(Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

pub fn response(response: &InferResponse, format: &ResponseFormat) -> Response {
    let mut binary_len = 0;
    let outputs = response
        .outputs
        .iter()
        .map(|o| {
            let data = o.tensor.data();
            let binary = format.is_binary(&o.name);
            if binary {
                binary_len += data.le_byte_len();
            }
            OutputJson {
                name: &o.name,
                datatype: data.datatype().as_str(),
                shape: o.tensor.shape(),
                parameters: binary.then(|| BinaryParameters {
                    binary_data_size: data.le_byte_len(),
                }),
                data: (!binary).then_some(JsonData(data)),
            }
        })
        .collect();
    let json = ResponseJson {
        model_name: &response.model_name,
        model_version: response.model_version.to_string(),
        id: (!response.id.is_empty()).then_some(response.id.as_str()),
        outputs,
    };
    let mut body = Vec::with_capacity(256 + binary_len);
    // Writing to a Vec cannot fail, and every field serializes infallibly.
    let _ = serde_json::to_writer(&mut body, &json);
    if binary_len == 0 {
        return (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
    }
    let header_len = body.len();
    for o in response
        .outputs
        .iter()
        .filter(|o| format.is_binary(&o.name))
    {
        o.tensor.data().write_le_bytes(&mut body);
    }
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
