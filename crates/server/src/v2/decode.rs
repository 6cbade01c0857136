//! Inference requests: a JSON header, optionally followed by binary tensor data. The body comes
//! as the frames it arrived in; binary tensors are slices of them (no copy), JSON `data` is
//! decoded straight into typed elements.

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use inferd_core::{DataType, NamedTensor, Tensor, dims_from_wire};
use inferd_runtime::{InferRequest, Parameter, Parameters};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::json_data;
use crate::ApiError;
use crate::pipeline::{Decoded, Rejected};
use crate::shm::{self, OutputRegions, SharedMemory, ShmRef};

#[derive(Deserialize)]
struct RequestJson<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(borrow)]
    inputs: Vec<InputJson<'a>>,
    #[serde(default)]
    outputs: Option<Vec<OutputJson>>,
}

#[derive(Deserialize)]
struct InputJson<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: Cow<'a, str>,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
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
pub(crate) fn parameters(params: &Map<String, Value>) -> Result<Parameters, ApiError> {
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

/// Reads consecutive byte ranges from the body's frames as slices of them.
struct Frames<'a> {
    frames: &'a [Bytes],
    /// Frame and offset in it of the next byte.
    at: (usize, usize),
    left: usize,
}

impl<'a> Frames<'a> {
    fn new(frames: &'a [Bytes]) -> Frames<'a> {
        Frames {
            frames,
            at: (0, 0),
            left: frames.iter().map(Bytes::len).sum(),
        }
    }

    /// The next `n` bytes, as slices of the frames they lie in.
    fn take(&mut self, mut n: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.left -= n.min(self.left);
        while n > 0 && self.at.0 < self.frames.len() {
            let (frame, offset) = self.at;
            let available = self.frames[frame].len() - offset;
            let k = n.min(available);
            out.push(self.frames[frame].slice(offset..offset + k));
            n -= k;
            self.at = if k == available {
                (frame + 1, 0)
            } else {
                (frame, offset + k)
            };
        }
        out
    }
}

/// The first `n` bytes in one piece: borrowed from the first frame when they lie in it.
fn head(frames: &[Bytes], n: usize) -> Cow<'_, [u8]> {
    match frames.first() {
        None => Cow::Borrowed(&[]),
        Some(first) if first.len() >= n => Cow::Borrowed(&first[..n]),
        Some(_) => {
            let mut joined = BytesMut::with_capacity(n);
            for chunk in Frames::new(frames).take(n) {
                joined.extend_from_slice(&chunk);
            }
            Cow::Owned(joined.to_vec())
        }
    }
}

/// Parses a request body. `header_length` is the `Inference-Header-Content-Length` header:
/// when present the JSON is that many bytes and binary tensor data follows.
pub fn request(
    frames: &[Bytes],
    header_length: Option<usize>,
) -> Result<Decoded<ResponseFormat>, Rejected> {
    request_using(frames, header_length, None)
}

/// As [`request`], with tensors that name regions of `shm` (`None` where a request cannot
/// reach shared memory, such as a stream message).
pub fn request_using(
    frames: &[Bytes],
    header_length: Option<usize>,
    shm: Option<&SharedMemory>,
) -> Result<Decoded<ResponseFormat>, Rejected> {
    let total: usize = frames.iter().map(Bytes::len).sum();
    let json_len = match header_length {
        Some(n) if n > total => {
            return Err(ApiError::bad_request(format!(
                "Inference-Header-Content-Length is {n} but the body has only {total} bytes"
            ))
            .into());
        }
        Some(n) => n,
        None => total,
    };
    let json = head(frames, json_len);
    let mut binary = Frames::new(frames);
    binary.take(json_len);
    let binary = binary;
    let parsed: RequestJson = serde_json::from_slice(&json)
        .map_err(|e| ApiError::bad_request(format!("malformed inference request JSON: {e}")))?;
    let id = parsed.id.clone().map(Cow::into_owned).unwrap_or_default();
    decode_parsed(parsed, binary, shm).map_err(|e| e.of(&id))
}

/// The shared memory reference in a tensor's parameters, if any.
fn shm_ref(params: &Map<String, Value>) -> Result<Option<ShmRef>, String> {
    if !ShmRef::mentioned(|k| params.contains_key(k)) {
        return Ok(None);
    }
    let params = parameters(params).map_err(|e| e.message)?;
    ShmRef::from_parameters(&params)
}

fn decode_parsed(
    parsed: RequestJson<'_>,
    mut binary: Frames<'_>,
    shm: Option<&SharedMemory>,
) -> Result<Decoded<ResponseFormat>, ApiError> {
    let mut regions = OutputRegions::default();
    let mut inputs = Vec::with_capacity(parsed.inputs.len());
    for input in parsed.inputs {
        let fail = |m: String| ApiError::bad_request(format!("input '{}': {m}", input.name));
        let datatype: DataType = input.datatype.parse().map_err(|e| fail(format!("{e}")))?;
        let shape = dims_from_wire(&input.shape).map_err(fail)?;
        let at = shm_ref(&input.parameters).map_err(fail)?;
        let tensor = match (at, input.parameters.get("binary_data_size"), input.data) {
            (Some(at), None, None) => shm::usable(shm)
                .and_then(|shm| shm.input(&at, datatype, shape))
                .map_err(|e| e.about(&format!("input '{}'", input.name)))?,
            (Some(_), _, _) => {
                return Err(fail(
                    "names a shared memory region and also has data or binary_data_size".into(),
                ));
            }
            (None, Some(size), _) => {
                let size = size.as_u64().ok_or_else(|| {
                    fail(format!("binary_data_size must be a byte count, not {size}"))
                })? as usize;
                if size > binary.left {
                    return Err(fail(format!(
                        "binary_data_size is {size} but only {} bytes of binary data remain in the body",
                        binary.left
                    )));
                }
                Tensor::from_wire(datatype, shape, binary.take(size))
                    .map_err(|e| fail(format!("binary_data_size is {size} bytes: {e}")))?
            }
            (None, None, Some(data)) => {
                let data = json_data::decode(datatype, data).map_err(fail)?;
                Tensor::new(shape, data).map_err(fail)?
            }
            (None, None, None) => {
                return Err(fail(
                    "has neither 'data' nor a 'binary_data_size' parameter".into(),
                ));
            }
        };
        inputs.push(NamedTensor {
            name: input.name,
            tensor,
        });
    }
    if binary.left > 0 {
        return Err(ApiError::bad_request(format!(
            "{} bytes of binary data follow the JSON header but no input claims them (binary_data_size)",
            binary.left
        )));
    }

    let mut format = ResponseFormat {
        all_binary: flag(&parsed.parameters, "binary_data_output")?.unwrap_or(false),
        binary: HashMap::new(),
    };
    let mut classification = std::collections::BTreeMap::new();
    let outputs = match parsed.outputs {
        None => None,
        Some(outputs) => {
            let mut names = Vec::with_capacity(outputs.len());
            for output in outputs {
                if let Some(k) = output.parameters.get("classification") {
                    let count = k.as_u64().filter(|k| *k >= 1).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "output '{}': classification is {k}; give the number of classes \
                             wanted, at least 1",
                            output.name
                        ))
                    })?;
                    classification.insert(output.name.clone(), count as usize);
                }
                let at = shm_ref(&output.parameters)
                    .map_err(|e| ApiError::bad_request(format!("output '{}': {e}", output.name)))?;
                if let Some(at) = at {
                    let region = shm::usable(shm)
                        .and_then(|shm| shm.output(at))
                        .map_err(|e| e.about(&format!("output '{}'", output.name)))?;
                    regions.push(output.name.clone(), region);
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
        parameters: parameters(&parsed.parameters)?,
        inputs,
        outputs,
        classification,
    };
    Ok(Decoded {
        request,
        id: parsed.id.map(Cow::into_owned).unwrap_or_default(),
        format,
        shm: regions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferd_core::TensorData;

    fn one(body: &[u8]) -> Vec<Bytes> {
        vec![Bytes::copy_from_slice(body)]
    }

    fn err(body: &[u8], header: Option<usize>) -> String {
        request(&one(body), header).err().unwrap().error.message
    }

    #[test]
    fn json_request() {
        let body =
            br#"{"id":"7","inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[[1,2]]}],
            "outputs":[{"name":"y","parameters":{"binary_data":true}}]}"#;
        let d = request(&one(body), None).unwrap();
        assert_eq!(
            d.request.inputs[0].tensor.data(),
            TensorData::F32(vec![1.0, 2.0])
        );
        assert_eq!(d.request.outputs, Some(vec!["y".to_string()]));
        assert_eq!(d.id, "7");
        assert!(d.format.is_binary("y"));
    }

    #[test]
    fn binary_request_is_sliced_across_frames() {
        let header = br#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}},
            {"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}}],
            "parameters":{"binary_data_output":true}}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
        body.extend_from_slice(&[2, 0, 0, 0, b'h', b'i']);
        let body = Bytes::from(body);
        // Frames split inside the header, inside the INT32 tensor and inside the BYTES one.
        let cuts = [10, header.len() + 3, header.len() + 11, body.len()];
        let mut frames = Vec::new();
        let mut from = 0;
        for to in cuts {
            frames.push(body.slice(from..to));
            from = to;
        }
        let d = request(&frames, Some(header.len())).unwrap();
        let x = &d.request.inputs[0].tensor;
        assert_eq!(x.data(), TensorData::I32(vec![1, 2]));
        assert_eq!(x.chunks().len(), 2, "sliced from two frames, not joined");
        assert_eq!(
            d.request.inputs[1].tensor.data(),
            TensorData::Bytes(vec![b"hi".to_vec()])
        );
        assert!(d.format.is_binary("anything"));
        assert_eq!(
            d.request.parameters["binary_data_output"],
            Parameter::Bool(true)
        );
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

    /// Hostile bodies are refused with a message, before anything their numbers claim is
    /// allocated (issue 15's hardening list).
    #[test]
    fn hostile_bodies_are_refused_before_allocating() {
        // Nesting far past serde_json's recursion limit: an error, not a stack overflow.
        let deep = format!(
            r#"{{"inputs":[{{"name":"x","shape":[1],"datatype":"FP32","data":{}1{}}}]}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let m = err(deep.as_bytes(), None);
        assert!(m.contains("recursion limit"), "{m}");
        // A shape whose product overflows, in JSON and binary form.
        let m = err(
            br#"{"inputs":[{"name":"x","shape":[4294967296,4294967296,16],"datatype":"FP32","data":[1]}]}"#,
            None,
        );
        assert!(m.contains("input 'x'"), "{m}");
        let header = br#"{"inputs":[{"name":"x","shape":[9223372036854775807,4],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&[0; 4]);
        assert!(err(&body, Some(header.len())).contains("input 'x'"));
        // Element counts far beyond the data sent: refused by count, not allocated.
        let m = err(
            br#"{"inputs":[{"name":"x","shape":[1000000000000],"datatype":"FP64","data":[1]}]}"#,
            None,
        );
        assert!(m.contains("input 'x'"), "{m}");
        // binary_data_size past the end of the body.
        let header = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":18446744073709551615}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&[0; 4]);
        assert!(err(&body, Some(header.len())).contains("remain in the body"));
        // A BYTES length prefix that runs past the end of its tensor.
        let header = br#"{"inputs":[{"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, b'h', b'i']);
        let m = err(&body, Some(header.len()));
        assert!(m.contains("input 's'"), "{m}");
        // An absurd Inference-Header-Content-Length.
        let m = err(&body, Some(usize::MAX));
        assert!(m.contains("Inference-Header-Content-Length"), "{m}");
    }
}
