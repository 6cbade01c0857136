//! A TF Serving / KServe V1 predict body to the runtime's request, by the model's inputs:
//! `{"instances": [row, ...]}` (a row is the single input's value, or an object of every
//! input's value) or `{"inputs": value | {name: value}}` (columnar, batch dimension included).
//! Nested lists give the shape; elements take the input's datatype; `{"b64": "..."}` is bytes.

use base64::Engine;
use half::{bf16, f16};
use inferd_core::{DataType, NamedTensor, Tensor, TensorData, TensorSpec};
use inferd_runtime::{InferRequest, Parameters};
use serde_json::Value;

use crate::ApiError;

/// The signature TF Serving clients may name; the model's only one.
pub const DEFAULT_SIGNATURE: &str = "serving_default";

/// How the request was written, so the answer is written the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `instances` in, `predictions` out.
    Rows,
    /// `inputs` in, `outputs` out.
    Columns,
}

/// The request for a model with `inputs`, and how to answer it.
pub fn request(body: &[u8], inputs: &[TensorSpec]) -> Result<(InferRequest, Layout), ApiError> {
    let bad = |m: &str| ApiError::bad_request(m);
    let body = quote_non_finite(body);
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let Value::Object(mut body) = value else {
        return Err(bad(
            "the body must be a JSON object with \"instances\" or \"inputs\"",
        ));
    };
    match body.remove("signature_name") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() || s == DEFAULT_SIGNATURE => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "signature_name {other} is not served: a model here has one signature, \
                 \"{DEFAULT_SIGNATURE}\""
            )));
        }
    }
    let parameters = match body.remove("parameters") {
        None | Some(Value::Null) => Parameters::new(),
        Some(Value::Object(p)) => crate::v2::decode::parameters(&p)?,
        Some(_) => return Err(bad("\"parameters\" must be an object")),
    };
    let (columns, layout) = match (body.remove("instances"), body.remove("inputs")) {
        (Some(instances), None) => (rows_to_columns(instances, inputs)?, Layout::Rows),
        (None, Some(columns)) => (named_columns(columns, inputs)?, Layout::Columns),
        (Some(_), Some(_)) => {
            return Err(bad(
                "the body has both \"instances\" (row format) and \"inputs\" (columnar): send one",
            ));
        }
        (None, None) => {
            return Err(bad(
                "the body needs \"instances\" (row format) or \"inputs\" (columnar format)",
            ));
        }
    };
    if let Some(key) = body.keys().next() {
        return Err(ApiError::bad_request(format!(
            "unknown field \"{key}\"; a predict body has signature_name, instances or inputs, \
             and parameters"
        )));
    }
    let inputs = columns
        .into_iter()
        .map(|(spec, value)| {
            let tensor = tensor(spec.datatype, &value)
                .map_err(|e| ApiError::bad_request(format!("input '{}': {e}", spec.name)))?;
            Ok(NamedTensor {
                name: spec.name.clone(),
                tensor,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    let request = InferRequest {
        parameters,
        inputs,
        outputs: None,
        classification: Default::default(),
    };
    Ok((request, layout))
}

/// TF Serving reads `NaN`, `Infinity` and `-Infinity` as numbers (Python's json writes them);
/// strict JSON has no such tokens, so outside strings they become the strings that float
/// inputs take.
fn quote_non_finite(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let has = |token: &[u8]| body.windows(token.len()).any(|w| w == token);
    if !has(b"NaN") && !has(b"Infinity") {
        return std::borrow::Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        let token = [&b"-Infinity"[..], b"Infinity", b"NaN"]
            .into_iter()
            .find(|t| body[i..].starts_with(t));
        match (b, token) {
            (b'"', _) => {
                in_string = true;
                out.push(b);
                i += 1;
            }
            (_, Some(t)) => {
                out.push(b'"');
                out.extend_from_slice(t);
                out.push(b'"');
                i += t.len();
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A float element: a number, or one of the non-finite names.
fn float_of(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        other => other.as_f64(),
    }
}

/// Row format: one value per input, each the list of that input's rows.
fn rows_to_columns(
    instances: Value,
    inputs: &[TensorSpec],
) -> Result<Vec<(&TensorSpec, Value)>, ApiError> {
    let Value::Array(rows) = instances else {
        return Err(ApiError::bad_request(
            "\"instances\" must be a list of rows",
        ));
    };
    if rows.is_empty() {
        return Err(ApiError::bad_request("\"instances\" is empty"));
    }
    let keyed = |row: &Value| {
        row.as_object().is_some_and(|o| {
            !o.contains_key("b64") && o.keys().all(|k| inputs.iter().any(|i| &i.name == k))
        })
    };
    if let [only] = inputs
        && !rows.iter().all(keyed)
    {
        // A single-input model takes bare rows.
        return Ok(vec![(only, Value::Array(rows))]);
    }
    let mut columns: Vec<Vec<Value>> = inputs
        .iter()
        .map(|_| Vec::with_capacity(rows.len()))
        .collect();
    for (n, row) in rows.into_iter().enumerate() {
        let Value::Object(mut row) = row else {
            return Err(ApiError::bad_request(format!(
                "instance {n} must be an object naming each input ({}): the model has {} inputs",
                names(inputs),
                inputs.len()
            )));
        };
        for (spec, column) in inputs.iter().zip(&mut columns) {
            let value = row.remove(&spec.name).ok_or_else(|| {
                ApiError::bad_request(format!("instance {n} has no input '{}'", spec.name))
            })?;
            column.push(value);
        }
        if let Some(extra) = row.keys().next() {
            return Err(unknown(extra, inputs));
        }
    }
    Ok(inputs
        .iter()
        .zip(columns)
        .map(|(spec, column)| (spec, Value::Array(column)))
        .collect())
}

/// Columnar format: the single input's value, or an object of every input's.
fn named_columns(
    columns: Value,
    inputs: &[TensorSpec],
) -> Result<Vec<(&TensorSpec, Value)>, ApiError> {
    let named = matches!(&columns, Value::Object(o)
        if !o.contains_key("b64") && o.keys().all(|k| inputs.iter().any(|i| &i.name == k)));
    match (columns, inputs) {
        (value, [only]) if !named => Ok(vec![(only, value)]),
        (Value::Object(mut map), _) => {
            let out = inputs
                .iter()
                .map(|spec| {
                    let value = map.remove(&spec.name).ok_or_else(|| {
                        ApiError::bad_request(format!("\"inputs\" has no input '{}'", spec.name))
                    })?;
                    Ok((spec, value))
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            match map.keys().next() {
                Some(extra) => Err(unknown(extra, inputs)),
                None => Ok(out),
            }
        }
        (_, _) => Err(ApiError::bad_request(format!(
            "\"inputs\" must be an object naming each input ({}): the model has {} inputs",
            names(inputs),
            inputs.len()
        ))),
    }
}

fn unknown(name: &str, inputs: &[TensorSpec]) -> ApiError {
    ApiError::bad_request(format!(
        "unknown input '{name}'; the model's inputs are: {}",
        names(inputs)
    ))
}

fn names(inputs: &[TensorSpec]) -> String {
    inputs
        .iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A tensor of `datatype` from nested lists (the shape) of elements.
pub fn tensor(datatype: DataType, value: &Value) -> Result<Tensor, String> {
    let mut shape = Vec::new();
    let mut at = value;
    while let Value::Array(items) = at {
        shape.push(items.len());
        match items.first() {
            Some(first) => at = first,
            None => break,
        }
    }
    let mut leaves = Vec::new();
    collect(value, &shape, &mut leaves)?;
    let data = elements(datatype, &leaves)?;
    Tensor::new(shape, data)
}

/// The leaves in row-major order, checking every list at a depth has the same length.
fn collect<'a>(value: &'a Value, shape: &[usize], out: &mut Vec<&'a Value>) -> Result<(), String> {
    match (value, shape.split_first()) {
        (Value::Array(items), Some((n, rest))) => {
            if items.len() != *n {
                return Err(format!(
                    "the nested lists are ragged: a list of {} where the first had {n}",
                    items.len()
                ));
            }
            items.iter().try_for_each(|item| collect(item, rest, out))
        }
        (Value::Array(_), None) => {
            Err("the nested lists are ragged: a list where a value was".into())
        }
        (_, Some(_)) => Err("the nested lists are ragged: a value where a list was".into()),
        (leaf, None) => {
            out.push(leaf);
            Ok(())
        }
    }
}

fn elements(datatype: DataType, leaves: &[&Value]) -> Result<TensorData, String> {
    let wrong = |v: &Value| format!("{v} is not a {datatype} value");
    let float = |v: &&Value| float_of(v).ok_or_else(|| wrong(v));
    fn int<T: TryFrom<i64> + TryFrom<u64>>(
        v: &Value,
        wrong: impl Fn(&Value) -> String,
    ) -> Result<T, String> {
        match (v.as_i64(), v.as_u64()) {
            (Some(i), _) => T::try_from(i).map_err(|_| format!("{v} is out of range")),
            (None, Some(u)) => T::try_from(u).map_err(|_| format!("{v} is out of range")),
            _ => Err(wrong(v)),
        }
    }
    macro_rules! ints {
        ($variant:ident) => {
            TensorData::$variant(
                leaves
                    .iter()
                    .map(|v| int(v, wrong))
                    .collect::<Result<_, _>>()?,
            )
        };
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(
            leaves
                .iter()
                .map(|v| v.as_bool().ok_or_else(|| wrong(v)))
                .collect::<Result<_, _>>()?,
        ),
        DataType::U8 => ints!(U8),
        DataType::U16 => ints!(U16),
        DataType::U32 => ints!(U32),
        DataType::U64 => ints!(U64),
        DataType::I8 => ints!(I8),
        DataType::I16 => ints!(I16),
        DataType::I32 => ints!(I32),
        DataType::I64 => ints!(I64),
        DataType::F16 => TensorData::F16(
            leaves
                .iter()
                .map(|v| float(v).map(f16::from_f64))
                .collect::<Result<_, _>>()?,
        ),
        DataType::BF16 => TensorData::BF16(
            leaves
                .iter()
                .map(|v| float(v).map(bf16::from_f64))
                .collect::<Result<_, _>>()?,
        ),
        DataType::F32 => TensorData::F32(
            leaves
                .iter()
                .map(|v| float(v).map(|f| f as f32))
                .collect::<Result<_, _>>()?,
        ),
        DataType::F64 => TensorData::F64(leaves.iter().map(float).collect::<Result<_, _>>()?),
        DataType::Bytes => TensorData::Bytes(
            leaves
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.as_bytes().to_vec()),
                    Value::Object(o) => match o.get("b64").and_then(Value::as_str) {
                        Some(b64) if o.len() == 1 => base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .map_err(|e| format!("{{\"b64\": ...}} is not base64: {e}")),
                        _ => Err(format!("{v} is neither a string nor {{\"b64\": \"...\"}}")),
                    },
                    other => Err(wrong(other)),
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, datatype: DataType, dims: &[i64]) -> TensorSpec {
        TensorSpec::new(name, datatype, dims.to_vec())
    }

    #[test]
    fn rows_and_columns_of_one_and_several_inputs() {
        let one = [spec("X", DataType::F32, &[4])];
        let (r, layout) = request(br#"{"instances": [[1, 2, 3, 4], [5, 6, 7, 8]]}"#, &one).unwrap();
        assert_eq!(layout, Layout::Rows);
        assert_eq!(r.inputs[0].tensor.shape(), [2, 4]);
        let (r, layout) = request(br#"{"inputs": {"X": [[1, 2, 3, 4]]}}"#, &one).unwrap();
        assert_eq!(
            (layout, r.inputs[0].tensor.shape()),
            (Layout::Columns, &[1, 4][..])
        );
        let two = [
            spec("x", DataType::F32, &[2]),
            spec("k", DataType::I64, &[1]),
        ];
        let (r, _) = request(
            br#"{"instances": [{"x": [1.5, 2], "k": [3]}, {"k": [4], "x": [0, 0]}]}"#,
            &two,
        )
        .unwrap();
        assert_eq!(r.inputs[1].tensor.data(), TensorData::I64(vec![3, 4]));
        let err = request(br#"{"instances": [[1, 2]]}"#, &two).unwrap_err();
        assert!(
            err.message
                .contains("must be an object naming each input (x, k)"),
            "{}",
            err.message
        );
        let err =
            request(br#"{"instances": [{"x": [1, 2], "k": [1], "z": 1}]}"#, &two).unwrap_err();
        assert!(err.message.contains("unknown input 'z'"), "{}", err.message);
    }

    #[test]
    fn bytes_take_strings_and_b64_and_bad_elements_are_named() {
        let text = [spec("s", DataType::Bytes, &[1])];
        let (r, _) = request(br#"{"instances": [["a"], [{"b64": "/wA="}]]}"#, &text).unwrap();
        assert_eq!(
            r.inputs[0].tensor.data(),
            TensorData::Bytes(vec![b"a".to_vec(), vec![0xff, 0]])
        );
        let ints = [spec("i", DataType::I32, &[1])];
        let err = request(br#"{"instances": [[1.5]]}"#, &ints).unwrap_err();
        assert!(
            err.message.contains("1.5 is not a INT32 value"),
            "{}",
            err.message
        );
        let err = request(br#"{"instances": [[1], [2, 3]]}"#, &ints).unwrap_err();
        assert!(err.message.contains("ragged"), "{}", err.message);
        let floats = [spec("f", DataType::F64, &[2])];
        let err = request(br#"{"instances": [[1, 2]], "x": "NaN"}"#, &floats).unwrap_err();
        assert!(
            err.message.contains("unknown field \"x\""),
            "{}",
            err.message
        );
        let (r, _) = request(br#"{"instances": [[NaN, -Infinity]]}"#, &floats).unwrap();
        let TensorData::F64(v) = r.inputs[0].tensor.data() else {
            panic!()
        };
        assert!(v[0].is_nan() && v[1] == f64::NEG_INFINITY);
        let err =
            request(br#"{"signature_name": "other", "instances": [[1]]}"#, &ints).unwrap_err();
        assert!(err.message.contains("serving_default"), "{}", err.message);
    }
}
