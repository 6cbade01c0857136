//! gRPC wire messages to the runtime's request and back. Validation against the model lives in
//! the runtime, shared with HTTP; this layer only decodes tensors.

use bytes::Bytes;
use inferd_core::{DataType, NamedTensor, Tensor, TensorData, check_binary_len, dims_from_wire};
use inferd_runtime::{InferRequest, InferResponse, Parameter, Parameters};
use tonic::Status;

use super::pb::{self, infer_parameter::ParameterChoice};

fn parameters(
    wire: std::collections::HashMap<String, pb::InferParameter>,
) -> Result<Parameters, Status> {
    wire.into_iter()
        .map(|(key, value)| {
            let p = match value.parameter_choice {
                Some(ParameterChoice::BoolParam(b)) => Parameter::Bool(b),
                Some(ParameterChoice::Int64Param(i)) => Parameter::Int64(i),
                Some(ParameterChoice::Uint64Param(u)) => Parameter::Uint64(u),
                Some(ParameterChoice::DoubleParam(d)) => Parameter::Double(d),
                Some(ParameterChoice::StringParam(s)) => Parameter::String(s),
                None => {
                    return Err(Status::invalid_argument(format!(
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

fn raw(dt: DataType, shape: &[usize], bytes: &Bytes) -> Result<TensorData, String> {
    check_binary_len(dt, shape, bytes.len())
        .map_err(|e| format!("raw contents are {} bytes but {e}", bytes.len()))?;
    TensorData::from_le_bytes(dt, bytes)
}

/// The runtime request, and whether the client sent raw contents (answered in kind).
pub fn request(wire: pb::ModelInferRequest) -> Result<(InferRequest, bool), Status> {
    let use_raw = !wire.raw_input_contents.is_empty();
    if use_raw && wire.raw_input_contents.len() != wire.inputs.len() {
        return Err(Status::invalid_argument(format!(
            "raw_input_contents has {} entries but the request has {} inputs; give one per input, in input order",
            wire.raw_input_contents.len(),
            wire.inputs.len()
        )));
    }
    let mut inputs = Vec::with_capacity(wire.inputs.len());
    for (ix, input) in wire.inputs.into_iter().enumerate() {
        let fail = |m: String| Status::invalid_argument(format!("input '{}': {m}", input.name));
        let dt: DataType = input.datatype.parse().map_err(|e| fail(format!("{e}")))?;
        let shape = dims_from_wire(&input.shape).map_err(fail)?;
        let data = match (use_raw, input.contents) {
            (true, Some(_)) => {
                return Err(fail(
                    "has typed contents but the request also uses raw_input_contents".into(),
                ));
            }
            (true, None) => raw(dt, &shape, &wire.raw_input_contents[ix]).map_err(fail)?,
            (false, Some(contents)) => typed(dt, contents).map_err(fail)?,
            (false, None) => {
                return Err(fail(
                    "has no contents and the request has no raw_input_contents".into(),
                ));
            }
        };
        let tensor = Tensor::new(shape, data).map_err(fail)?;
        inputs.push(NamedTensor {
            name: input.name,
            tensor,
        });
    }
    let outputs = if wire.outputs.is_empty() {
        None
    } else {
        let mut names = Vec::with_capacity(wire.outputs.len());
        for output in wire.outputs {
            if output.parameters.contains_key("classification") {
                return Err(Status::invalid_argument(format!(
                    "output '{}': the classification extension is not supported yet",
                    output.name
                )));
            }
            names.push(output.name);
        }
        Some(names)
    };
    let request = InferRequest {
        id: wire.id,
        parameters: parameters(wire.parameters)?,
        inputs,
        outputs,
        trace: None,
    };
    Ok((request, use_raw))
}

fn contents(data: TensorData) -> pb::InferTensorContents {
    let mut c = pb::InferTensorContents::default();
    match data {
        TensorData::Bool(v) => c.bool_contents = v,
        TensorData::I8(v) => c.int_contents = v.into_iter().map(i32::from).collect(),
        TensorData::I16(v) => c.int_contents = v.into_iter().map(i32::from).collect(),
        TensorData::I32(v) => c.int_contents = v,
        TensorData::I64(v) => c.int64_contents = v,
        TensorData::U8(v) => c.uint_contents = v.into_iter().map(u32::from).collect(),
        TensorData::U16(v) => c.uint_contents = v.into_iter().map(u32::from).collect(),
        TensorData::U32(v) => c.uint_contents = v,
        TensorData::U64(v) => c.uint64_contents = v,
        TensorData::F32(v) => c.fp32_contents = v,
        TensorData::F64(v) => c.fp64_contents = v,
        TensorData::Bytes(v) => c.bytes_contents = v,
        // Callers send half floats raw; see `response`.
        TensorData::F16(_) | TensorData::BF16(_) => {}
    }
    c
}

/// The wire response: raw contents when the request was raw, or when an output (FP16, BF16)
/// has no typed field; typed contents otherwise.
pub fn response(response: InferResponse, use_raw: bool) -> pb::ModelInferResponse {
    let use_raw = use_raw
        || response
            .outputs
            .iter()
            .any(|o| matches!(o.tensor.datatype(), DataType::F16 | DataType::BF16));
    let mut wire = pb::ModelInferResponse {
        model_name: response.model_name,
        model_version: response.model_version.to_string(),
        id: response.id,
        ..Default::default()
    };
    for NamedTensor { name, tensor } in response.outputs {
        let datatype = tensor.datatype().as_str().to_string();
        let (shape, data) = tensor.into_parts();
        let mut output = pb::model_infer_response::InferOutputTensor {
            name,
            datatype,
            shape: shape.iter().map(|d| *d as i64).collect(),
            ..Default::default()
        };
        if use_raw {
            let mut bytes = Vec::new();
            data.write_le_bytes(&mut bytes);
            wire.raw_output_contents.push(bytes);
        } else {
            output.contents = Some(contents(data));
        }
        wire.outputs.push(output);
    }
    wire
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let (a, a_raw) = request(typed).unwrap();
        let (b, b_raw) = request(raw).unwrap();
        assert_eq!(a.inputs, b.inputs);
        assert_eq!(a.inputs[0].tensor.data(), &TensorData::I16(vec![1, -2]));
        assert!(!a_raw && b_raw);
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
        let err = request(out_of_range).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("input 'x'") && err.message().contains("300"),
            "{}",
            err.message()
        );

        let short_raw = pb::ModelInferRequest {
            inputs: vec![input("x", "FP32", vec![2], None)],
            raw_input_contents: vec![Bytes::from_static(&[0; 4])],
            ..Default::default()
        };
        let err = request(short_raw).unwrap_err();
        assert!(err.message().contains("needs 8"), "{}", err.message());

        let no_data = pb::ModelInferRequest {
            inputs: vec![input("x", "FP32", vec![1], None)],
            ..Default::default()
        };
        assert!(
            request(no_data)
                .unwrap_err()
                .message()
                .contains("has no contents")
        );
    }

    #[test]
    fn half_floats_force_raw_answers() {
        let tensor = Tensor::new(vec![1], TensorData::F16(vec![half::f16::ONE])).unwrap();
        let resp = InferResponse {
            id: "a".into(),
            model_name: "m".into(),
            model_version: 1,
            outputs: vec![NamedTensor {
                name: "y".into(),
                tensor,
            }],
        };
        let wire = response(resp, false);
        assert_eq!(wire.raw_output_contents, vec![vec![0x00, 0x3c]]);
        assert_eq!(wire.id, "a");
    }
}
