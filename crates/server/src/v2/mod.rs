//! The Open Inference Protocol (V2) REST wire format: JSON bodies and the binary tensor extension.

pub mod decode;
pub mod encode;
mod json_data;
pub mod triton_config;

/// Header giving the length of the JSON part of a body that carries binary tensors after it.
pub const HEADER_LENGTH: &str = "inference-header-content-length";
