//! Entry points for the fuzz targets in `fuzz/` (not an API): each decodes what a client or a
//! model repository could send and drops the result. None may panic, whatever the bytes.

use bytes::Bytes;
use prost::Message;

/// The V2 REST decoder: `body` as JSON alone, or as a JSON header of `header_length` bytes
/// followed by binary tensor data (the binary extension's splitter).
pub fn v2_request(body: &[u8], header_length: Option<usize>) {
    // Split into two frames as a socket might deliver them.
    let cut = body.len() / 3;
    let frames = [
        Bytes::copy_from_slice(&body[..cut]),
        Bytes::copy_from_slice(&body[cut..]),
    ];
    let _ = crate::v2::decode::request(&frames, header_length);
}

/// A gRPC `ModelInferRequest` from arbitrary protobuf bytes, through the conversion to the
/// runtime's request.
pub fn grpc_request(message: &[u8]) {
    if let Ok(wire) = crate::pb::ModelInferRequest::decode(message) {
        let _ = crate::grpc::convert::request(wire);
    }
}

/// A model's config: config.toml, its JSON form, and Triton's model-config JSON (the load API).
pub fn model_config(text: &str) {
    let _ = inferd_core::ModelConfig::parse_toml(text);
    let _ = inferd_core::ModelConfig::parse_json(text);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = crate::v2::triton_config::from_triton_json(&value);
    }
}
