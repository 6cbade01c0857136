//! gRPC wire messages to the runtime's request and back. Validation against the model lives in
//! the runtime, shared with HTTP; this layer only decodes tensors.

use inferd_core::{DataType, NamedTensor, Tensor, TensorData, dims_from_wire};
use inferd_runtime::{InferRequest, InferResponse, Parameter, Parameters, RequestContext};

use crate::ApiError;
use crate::pb::{self, infer_parameter::ParameterChoice};
use crate::pipeline::{Decoded, Rejected};
use crate::shm::{self, OutputRegions, SharedMemory, ShmRef};

fn parameters(
    wire: std::collections::HashMap<String, pb::InferParameter>,
) -> Result<Parameters, ApiError> {
    wire.into_iter()
        .map(|(key, value)| {
            let p = match value.parameter_choice {
                Some(ParameterChoice::BoolParam(b)) => Parameter::Bool(b),
                Some(ParameterChoice::Int64Param(i)) => Parameter::Int64(i),
                Some(ParameterChoice::Uint64Param(u)) => Parameter::Uint64(u),
                Some(ParameterChoice::DoubleParam(d)) => Parameter::Double(d),
                Some(ParameterChoice::StringParam(s)) => Parameter::String(s),
                None => {
                    return Err(ApiError::bad_request(format!(
                        "parameter '{key}' has no value"
                    )));
                }
            };
            Ok((key, p))
        })
        .collect()
}

/// Narrows 32-bit wire integers to the element type, naming the first one out of range.
fn narrow<T: TryFrom<W>, W: Copy + std::fmt::Display>(
    values: Vec<W>,
    dt: DataType,
) -> Result<Vec<T>, String> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            T::try_from(v).map_err(|_| format!("element {i} ({v}) is out of range for {dt}"))
        })
        .collect()
}

fn typed(dt: DataType, c: pb::InferTensorContents) -> Result<TensorData, String> {
    Ok(match dt {
        DataType::Bool => TensorData::Bool(c.bool_contents),
        DataType::I8 => TensorData::I8(narrow(c.int_contents, dt)?),
        DataType::I16 => TensorData::I16(narrow(c.int_contents, dt)?),
        DataType::I32 => TensorData::I32(c.int_contents),
        DataType::I64 => TensorData::I64(c.int64_contents),
        DataType::U8 => TensorData::U8(narrow(c.uint_contents, dt)?),
        DataType::U16 => TensorData::U16(narrow(c.uint_contents, dt)?),
        DataType::U32 => TensorData::U32(c.uint_contents),
        DataType::U64 => TensorData::U64(c.uint64_contents),
        DataType::F32 => TensorData::F32(c.fp32_contents),
        DataType::F64 => TensorData::F64(c.fp64_contents),
        DataType::Bytes => TensorData::Bytes(c.bytes_contents),
        DataType::F16 | DataType::BF16 => {
            return Err(format!(
                "{dt} has no typed contents field; send it in raw_input_contents"
            ));
        }
    })
}

/// The runtime request and its id (answers are raw whatever the request used).
pub fn request(wire: pb::ModelInferRequest) -> Result<Decoded<()>, Rejected> {
    request_using(wire, None)
}

/// As [`request`], with tensors that name regions of `shm` (`None` where a request cannot
/// reach shared memory, such as a stream message).
pub fn request_using(
    mut wire: pb::ModelInferRequest,
    shm: Option<&SharedMemory>,
) -> Result<Decoded<()>, Rejected> {
    let id = std::mem::take(&mut wire.id);
    let mut regions = OutputRegions::default();
    match decode(wire, shm, &mut regions) {
        Ok(request) => Ok(Decoded {
            request,
            id,
            format: (),
            shm: regions,
        }),
        Err(e) => Err(e.of(&id)),
    }
}

/// The shared memory reference in a tensor's parameters, if any.
fn shm_ref(
    params: &std::collections::HashMap<String, pb::InferParameter>,
) -> Result<Option<ShmRef>, ApiError> {
    if !ShmRef::mentioned(|k| params.contains_key(k)) {
        return Ok(None);
    }
    ShmRef::from_parameters(&parameters(params.clone())?).map_err(ApiError::bad_request)
}

fn decode(
    wire: pb::ModelInferRequest,
    shm: Option<&SharedMemory>,
    regions: &mut OutputRegions,
) -> Result<InferRequest, ApiError> {
    let at = wire
        .inputs
        .iter()
        .map(|i| shm_ref(&i.parameters).map_err(|e| e.about(&format!("input '{}'", i.name))))
        .collect::<Result<Vec<_>, _>>()?;
    // Inputs in shared memory have no raw contents: the rest are given in input order.
    let in_request = at.iter().filter(|a| a.is_none()).count();
    let use_raw = !wire.raw_input_contents.is_empty();
    if use_raw && wire.raw_input_contents.len() != in_request {
        return Err(ApiError::bad_request(format!(
            "raw_input_contents has {} entries but the request has {in_request} inputs not in \
             shared memory; give one per such input, in input order",
            wire.raw_input_contents.len(),
        )));
    }
    let mut inputs = Vec::with_capacity(wire.inputs.len());
    let mut raw = wire.raw_input_contents.into_iter();
    for (input, at) in wire.inputs.into_iter().zip(at) {
        let fail = |m: String| ApiError::bad_request(format!("input '{}': {m}", input.name));
        let dt: DataType = input.datatype.parse().map_err(|e| fail(format!("{e}")))?;
        let shape = dims_from_wire(&input.shape).map_err(fail)?;
        if let Some(at) = at {
            if input.contents.is_some() {
                return Err(fail(
                    "names a shared memory region and also has contents".into(),
                ));
            }
            let tensor = shm::usable(shm)
                .and_then(|shm| shm.input(&at, dt, shape))
                .map_err(|e| e.about(&format!("input '{}'", input.name)))?;
            inputs.push(NamedTensor {
                name: input.name,
                tensor,
            });
            continue;
        }
        let tensor = match (raw.next(), input.contents) {
            (Some(_), Some(_)) => {
                return Err(fail(
                    "has typed contents but the request also uses raw_input_contents".into(),
                ));
            }
            (Some(bytes), None) => {
                let len = bytes.len();
                Tensor::from_wire(dt, shape, vec![bytes])
                    .map_err(|e| fail(format!("raw contents are {len} bytes: {e}")))?
            }
            (None, Some(contents)) => {
                Tensor::new(shape, typed(dt, contents).map_err(fail)?).map_err(fail)?
            }
            (None, None) => {
                return Err(fail(
                    "has no contents and the request has no raw_input_contents".into(),
                ));
            }
        };
        inputs.push(NamedTensor {
            name: input.name,
            tensor,
        });
    }
    let mut classification = std::collections::BTreeMap::new();
    let outputs = if wire.outputs.is_empty() {
        None
    } else {
        let mut names = Vec::with_capacity(wire.outputs.len());
        for output in wire.outputs {
            if let Some(k) = output.parameters.get("classification") {
                let count = match k.parameter_choice {
                    Some(ParameterChoice::Int64Param(k)) if k >= 1 => k as usize,
                    Some(ParameterChoice::Uint64Param(k)) if k >= 1 => k as usize,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "output '{}': classification must be an integer parameter of at \
                             least 1, the number of classes wanted",
                            output.name
                        )));
                    }
                };
                classification.insert(output.name.clone(), count);
            }
            let about = || format!("output '{}'", output.name);
            if let Some(at) = shm_ref(&output.parameters).map_err(|e| e.about(&about()))? {
                let region = shm::usable(shm)
                    .and_then(|shm| shm.output(at))
                    .map_err(|e| e.about(&about()))?;
                regions.push(output.name.clone(), region);
            }
            names.push(output.name);
        }
        Some(names)
    };
    let request = InferRequest {
        parameters: parameters(wire.parameters)?,
        inputs,
        outputs,
        classification,
    };
    Ok(request)
}

/// The wire response, always in raw contents (the backend's buffers), as Triton answers whatever
/// the request used: clients index into `raw_output_contents`, so an output written to shared
/// memory keeps its place there, empty.
pub fn response(
    context: &RequestContext,
    response: InferResponse,
    shm: &OutputRegions,
) -> pb::ModelInferResponse {
    wire_response(context.response_id(), response, shm)
}

/// One of a decoupled model's responses, for the request with the client's `id`.
pub fn partial(id: &str, response: InferResponse) -> pb::ModelInferResponse {
    wire_response(id, response, &OutputRegions::default())
}

fn wire_response(id: &str, response: InferResponse, shm: &OutputRegions) -> pb::ModelInferResponse {
    let mut wire = pb::ModelInferResponse {
        model_name: response.model_name,
        model_version: response.model_version.to_string(),
        id: id.to_string(),
        ..Default::default()
    };
    if response.decoupled {
        // The end of a decoupled model's responses (the stream decides what the client sees).
        wire.parameters.insert(
            "triton_final_response".into(),
            pb::InferParameter {
                parameter_choice: Some(ParameterChoice::BoolParam(true)),
            },
        );
    }
    for NamedTensor { name, tensor } in response.outputs {
        let in_shm = shm.get(&name).is_some();
        wire.outputs
            .push(pb::model_infer_response::InferOutputTensor {
                name,
                datatype: tensor.datatype().as_str().to_string(),
                shape: tensor.shape().iter().map(|d| *d as i64).collect(),
                ..Default::default()
            });
        wire.raw_output_contents.push(if in_shm {
            bytes::Bytes::new()
        } else {
            tensor.to_bytes()
        });
    }
    wire
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use pb::model_infer_request::InferInputTensor;

    fn input(
        name: &str,
        datatype: &str,
        shape: Vec<i64>,
        contents: Option<pb::InferTensorContents>,
    ) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape,
            contents,
            ..Default::default()
        }
    }

    #[test]
    fn typed_and_raw_inputs_decode_alike() {
        let typed = pb::ModelInferRequest {
            inputs: vec![input(
                "x",
                "INT16",
                vec![2],
                Some(pb::InferTensorContents {
                    int_contents: vec![1, -2],
                    ..Default::default()
                }),
            )],
            ..Default::default()
        };
        let raw = pb::ModelInferRequest {
            inputs: vec![input("x", "INT16", vec![2], None)],
            raw_input_contents: vec![Bytes::from_static(&[1, 0, 0xfe, 0xff])],
            ..Default::default()
        };
        let a = request(typed).unwrap();
        let b = request(raw).unwrap();
        assert_eq!(a.request.inputs, b.request.inputs);
        assert_eq!(
            a.request.inputs[0].tensor.data(),
            TensorData::I16(vec![1, -2])
        );
    }

    #[test]
    fn bad_inputs_are_invalid_argument_naming_the_input() {
        let out_of_range = pb::ModelInferRequest {
            inputs: vec![input(
                "x",
                "UINT8",
                vec![1],
                Some(pb::InferTensorContents {
                    uint_contents: vec![300],
                    ..Default::default()
                }),
            )],
            ..Default::default()
        };
        let err = request(out_of_range).err().unwrap().error;
        assert_eq!(err.kind, inferd_runtime::ErrorKind::InvalidArgument);
        assert!(
            err.message.contains("input 'x'") && err.message.contains("300"),
            "{}",
            err.message
        );

        let short_raw = pb::ModelInferRequest {
            inputs: vec![input("x", "FP32", vec![2], None)],
            raw_input_contents: vec![Bytes::from_static(&[0; 4])],
            ..Default::default()
        };
        let err = request(short_raw).err().unwrap().error;
        assert!(err.message.contains("needs 8"), "{}", err.message);

        let no_data = pb::ModelInferRequest {
            inputs: vec![input("x", "FP32", vec![1], None)],
            ..Default::default()
        };
        assert!(
            request(no_data)
                .err()
                .unwrap()
                .error
                .message
                .contains("has no contents")
        );
    }

    #[test]
    fn answers_are_raw() {
        let tensor = Tensor::new(vec![1], TensorData::F16(vec![half::f16::ONE])).unwrap();
        let resp = InferResponse {
            route: String::new(),
            model_name: "m".into(),
            model_version: 1,
            outputs: vec![NamedTensor {
                name: "y".into(),
                tensor,
            }],
            decoupled: false,
            cached: false,
        };
        let mut context = RequestContext::new(inferd_runtime::Protocol::Grpc);
        context.set_id("a", String::new);
        let wire = response(&context, resp, &OutputRegions::default());
        assert_eq!(
            wire.raw_output_contents,
            vec![bytes::Bytes::from_static(&[0x00, 0x3c])]
        );
        assert_eq!(wire.id, "a");
    }
}
