//! The runtime's answer in TF Serving's shapes: `{"predictions": [...]}` (one entry per row:
//! the single output's row, or an object of every output's) for row requests, `{"outputs":
//! value | {name: value}}` for columnar ones. BYTES that are not UTF-8 text are `{"b64": ...}`;
//! a float that is not a number is null (JSON has no NaN).

use axum::Json;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use inferd_core::{NamedTensor, Tensor, TensorData};
use inferd_runtime::InferResponse;
use serde_json::{Map, Value, json};

use super::decode::Layout;

pub fn response(response: &InferResponse, layout: Layout) -> Response {
    let outputs = &response.outputs;
    let body = match layout {
        Layout::Columns => match &outputs[..] {
            [only] => json!({ "outputs": value(&only.tensor) }),
            _ => json!({ "outputs": outputs
                .iter()
                .map(|o| (o.name.clone(), value(&o.tensor)))
                .collect::<Map<_, _>>() }),
        },
        Layout::Rows => json!({ "predictions": predictions(outputs) }),
    };
    Json(body).into_response()
}

/// One entry per row (the first dimension of every output).
fn predictions(outputs: &[NamedTensor]) -> Value {
    let columns: Vec<(&str, Vec<Value>)> = outputs
        .iter()
        .map(|o| {
            let rows = match value(&o.tensor) {
                Value::Array(rows) => rows,
                scalar => vec![scalar],
            };
            (o.name.as_str(), rows)
        })
        .collect();
    let n = columns
        .iter()
        .map(|(_, rows)| rows.len())
        .max()
        .unwrap_or(0);
    match &columns[..] {
        [(_, rows)] => Value::Array(rows.clone()),
        _ => Value::Array(
            (0..n)
                .map(|i| {
                    columns
                        .iter()
                        .map(|(name, rows)| {
                            (
                                name.to_string(),
                                rows.get(i).cloned().unwrap_or(Value::Null),
                            )
                        })
                        .collect::<Map<_, _>>()
                        .into()
                })
                .collect(),
        ),
    }
}

/// A tensor as nested lists of its shape (a scalar for rank 0).
pub fn value(tensor: &Tensor) -> Value {
    let leaves = leaves(tensor.data());
    nest(&leaves, tensor.shape())
}

fn nest(leaves: &[Value], shape: &[usize]) -> Value {
    match shape.split_first() {
        None => leaves.first().cloned().unwrap_or(Value::Null),
        Some((n, rest)) => {
            let step = rest.iter().product::<usize>();
            Value::Array(
                (0..*n)
                    .map(|i| nest(&leaves[i * step..(i + 1) * step], rest))
                    .collect(),
            )
        }
    }
}

fn leaves(data: TensorData) -> Vec<Value> {
    fn all<T: Into<Value>>(v: Vec<T>) -> Vec<Value> {
        v.into_iter().map(Into::into).collect()
    }
    let float = |f: f64| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    match data {
        TensorData::Bool(v) => all(v),
        TensorData::U8(v) => all(v),
        TensorData::U16(v) => all(v),
        TensorData::U32(v) => all(v),
        TensorData::U64(v) => all(v),
        TensorData::I8(v) => all(v),
        TensorData::I16(v) => all(v),
        TensorData::I32(v) => all(v),
        TensorData::I64(v) => all(v),
        TensorData::F16(v) => v.into_iter().map(|x| float(x.to_f64())).collect(),
        TensorData::BF16(v) => v.into_iter().map(|x| float(x.to_f64())).collect(),
        // f32 as its shortest decimal, as TF Serving writes it (not widened to f64 digits).
        TensorData::F32(v) => v
            .into_iter()
            .map(|x| match x.is_finite() {
                true => x
                    .to_string()
                    .parse::<serde_json::Number>()
                    .map_or(Value::Null, Value::Number),
                false => Value::Null,
            })
            .collect(),
        TensorData::F64(v) => v.into_iter().map(float).collect(),
        TensorData::Bytes(v) => v
            .into_iter()
            .map(|b| match String::from_utf8(b) {
                Ok(text) => Value::String(text),
                Err(e) => json!({
                    "b64": base64::engine::general_purpose::STANDARD.encode(e.into_bytes())
                }),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, tensor: Tensor) -> NamedTensor {
        NamedTensor {
            name: name.into(),
            tensor,
        }
    }

    #[test]
    fn rows_and_columns() {
        let label = Tensor::new(vec![2], TensorData::I64(vec![0, 2])).unwrap();
        let probs = Tensor::new(vec![2, 2], TensorData::F32(vec![0.25, 0.75, 0.5, 0.5])).unwrap();
        let outputs = vec![named("label", label), named("p", probs)];
        assert_eq!(
            predictions(&outputs),
            json!([{"label": 0, "p": [0.25, 0.75]}, {"label": 2, "p": [0.5, 0.5]}])
        );
        assert_eq!(
            predictions(&outputs[1..]),
            json!([[0.25, 0.75], [0.5, 0.5]])
        );
        let bytes =
            Tensor::new(vec![2], TensorData::Bytes(vec![b"ok".to_vec(), vec![0xff]])).unwrap();
        assert_eq!(value(&bytes), json!(["ok", {"b64": "/w=="}]));
    }
}
