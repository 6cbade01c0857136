//! Inference requests: JSON header, optional binary tensor data after it.

use std::collections::HashMap;

use inferd_core::{DataType, NamedTensor, Tensor, TensorData, check_binary_len, dims_from_wire};
use inferd_runtime::{InferRequest, Parameter, Parameters};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::json_data;
use crate::ApiError;

#[derive(Deserialize)]
struct RequestJson {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<InputJson>,
    #[serde(default)]
    outputs: Option<Vec<OutputJson>>,
}

#[derive(Deserialize)]
struct InputJson {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct OutputJson {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// How the response should be written.
#[derive(Debug, Default)]
pub struct ResponseFormat {
    /// `binary_data_output` in the request parameters: every output binary by default.
    pub all_binary: bool,
    /// `binary_data` given on a requested output, which overrides the default for that output.
    pub binary: HashMap<String, bool>,
}

impl ResponseFormat {
    pub fn is_binary(&self, output: &str) -> bool {
        self.binary.get(output).copied().unwrap_or(self.all_binary)
    }
}

/// Request parameters as the runtime reads them; JSON scalars only.
fn parameters(params: &Map<String, Value>) -> Result<Parameters, ApiError> {
    params
        .iter()
        .map(|(key, value)| {
            let p = match value {
                Value::Bool(b) => Parameter::Bool(*b),
                Value::String(s) => Parameter::String(s.clone()),
                Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => Parameter::Int64(i),
                    (None, Some(u), _) => Parameter::Uint64(u),
                    (None, None, Some(f)) => Parameter::Double(f),
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "parameter '{key}' is not a usable number"
                        )));
                    }
                },
                other => {
                    return Err(ApiError::bad_request(format!(
                        "parameter '{key}' must be a boolean, number or string, not {other}"
                    )));
                }
            };
            Ok((key.clone(), p))
        })
        .collect()
}

fn flag(params: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match params.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::bad_request(format!(
            "parameter '{key}' must be true or false, not {other}"
        ))),
    }
}

/// Parses a request body. `header_length` is the `Inference-Header-Content-Length` header:
/// when present the JSON is that many bytes and binary tensor data follows.
pub fn request(
    body: &[u8],
    header_length: Option<usize>,
) -> Result<(InferRequest, ResponseFormat), ApiError> {
    let (json, mut binary) = match header_length {
        Some(n) if n > body.len() => {
            return Err(ApiError::bad_request(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )));
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let parsed: RequestJson = serde_json::from_slice(json)
        .map_err(|e| ApiError::bad_request(format!("malformed inference request JSON: {e}")))?;

    let mut inputs = Vec::with_capacity(parsed.inputs.len());
    for input in parsed.inputs {
        let fail = |m: String| ApiError::bad_request(format!("input '{}': {m}", input.name));
        let datatype: DataType = input.datatype.parse().map_err(|e| fail(format!("{e}")))?;
        let shape = dims_from_wire(&input.shape).map_err(fail)?;
        let data = match (input.parameters.get("binary_data_size"), &input.data) {
            (Some(size), _) => {
                let size = size.as_u64().ok_or_else(|| {
                    fail(format!("binary_data_size must be a byte count, not {size}"))
                })? as usize;
                if size > binary.len() {
                    return Err(fail(format!(
                        "binary_data_size is {size} but only {} bytes of binary data remain in the body",
                        binary.len()
                    )));
                }
                let (bytes, rest) = binary.split_at(size);
                binary = rest;
                check_binary_len(datatype, &shape, size)
                    .map_err(|e| fail(format!("binary_data_size is {size} bytes but {e}")))?;
                TensorData::from_le_bytes(datatype, bytes).map_err(fail)?
            }
            (None, Some(data)) => json_data::decode(datatype, data).map_err(fail)?,
            (None, None) => {
                return Err(fail(
                    "has neither 'data' nor a 'binary_data_size' parameter".into(),
                ));
            }
        };
        let tensor = Tensor::new(shape, data).map_err(fail)?;
        inputs.push(NamedTensor {
            name: input.name,
            tensor,
        });
    }
    if !binary.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} bytes of binary data follow the JSON header but no input claims them (binary_data_size)",
            binary.len()
        )));
    }

    let mut format = ResponseFormat {
        all_binary: flag(&parsed.parameters, "binary_data_output")?.unwrap_or(false),
        binary: HashMap::new(),
    };
    let outputs = match parsed.outputs {
        None => None,
        Some(outputs) => {
            let mut names = Vec::with_capacity(outputs.len());
            for output in outputs {
                if output.parameters.contains_key("classification") {
                    return Err(ApiError::bad_request(format!(
                        "output '{}': the classification extension is not supported yet",
                        output.name
                    )));
                }
                if let Some(binary) = flag(&output.parameters, "binary_data")? {
                    format.binary.insert(output.name.clone(), binary);
                }
                names.push(output.name);
            }
            Some(names)
        }
    };
    let request = InferRequest {
        id: parsed.id.unwrap_or_default(),
        parameters: parameters(&parsed.parameters)?,
        inputs,
        outputs,
        trace: None,
    };
    Ok((request, format))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &[u8], header: Option<usize>) -> String {
        request(body, header).err().unwrap().message
    }

    #[test]
    fn json_request() {
        let body =
            br#"{"id":"7","inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[[1,2]]}],
            "outputs":[{"name":"y","parameters":{"binary_data":true}}]}"#;
        let (req, format) = request(body, None).unwrap();
        assert_eq!(
            req.inputs[0].tensor.data(),
            &TensorData::F32(vec![1.0, 2.0])
        );
        assert_eq!(req.outputs, Some(vec!["y".to_string()]));
        assert_eq!(req.id, "7");
        assert!(format.is_binary("y"));
    }

    #[test]
    fn binary_request() {
        let header = br#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}}],
            "parameters":{"binary_data_output":true}}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
        let (req, format) = request(&body, Some(header.len())).unwrap();
        assert_eq!(req.inputs[0].tensor.data(), &TensorData::I32(vec![1, 2]));
        assert!(format.is_binary("anything"));
        assert_eq!(req.parameters["binary_data_output"], Parameter::Bool(true));
    }

    #[test]
    fn errors_name_the_input() {
        assert!(err(b"{not json", None).contains("malformed inference request JSON"));
        let m = err(
            br#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#,
            None,
        );
        assert!(
            m.contains("input 'x'") && m.contains("needs 3 elements but 2"),
            "{m}"
        );
        let m = err(
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FLOAT","data":[1]}]}"#,
            None,
        );
        assert!(
            m.contains("input 'x'") && m.contains("unknown datatype 'FLOAT'"),
            "{m}"
        );
        let m = err(
            br#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}"#,
            None,
        );
        assert!(m.contains("negative"), "{m}");
        let m = err(
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#,
            None,
        );
        assert!(m.contains("neither 'data'"), "{m}");
    }

    #[test]
    fn binary_size_mismatches_are_rejected() {
        let header = br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&[0; 4]);
        let m = err(&body, Some(header.len()));
        assert!(m.contains("input 'x'") && m.contains("needs 8"), "{m}");
        let m = err(&body[..header.len() + 2], Some(header.len()));
        assert!(m.contains("only 2 bytes"), "{m}");
        let m = err(&body, Some(body.len() + 1));
        assert!(m.contains("Inference-Header-Content-Length"), "{m}");
        let header = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&[0; 4]);
        assert!(err(&body, Some(header.len())).contains("no input claims them"));
    }
}
