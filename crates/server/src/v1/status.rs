//! Model status and metadata in TF Serving's shapes (`GET /v1/models/{m}[/versions/{v}]`,
//! `.../metadata`), with KServe V1's `name` and `ready` beside the status so both kinds of
//! client read the same answer.

use inferd_core::{DataType, TensorSpec};
use inferd_runtime::{ModelSpec, ModelView};
use serde_json::{Map, Value, json};

use super::decode::DEFAULT_SIGNATURE;

/// `{"name", "ready", "model_version_status": [{"version", "state", "status"}]}`; `versions`
/// are those asked about (all ready ones, or the one named).
pub fn status(name: &str, versions: &[u64], ready: bool) -> Value {
    let statuses: Vec<Value> = versions
        .iter()
        .map(|v| {
            json!({
                "version": v.to_string(),
                "state": "AVAILABLE",
                "status": { "error_code": "OK", "error_message": "" },
            })
        })
        .collect();
    json!({ "name": name, "ready": ready, "model_version_status": statuses })
}

/// TF Serving's GetModelMetadata answer: the signature_def of the model's one signature.
pub fn metadata(view: &ModelView) -> Value {
    let spec = &view.spec;
    let tensors = |specs: &[TensorSpec]| -> Map<String, Value> {
        specs
            .iter()
            .map(|t| (t.name.clone(), tensor_info(spec, t)))
            .collect()
    };
    json!({
        "model_spec": {
            "name": spec.name,
            "signature_name": "",
            "version": spec.version.to_string(),
        },
        "metadata": {
            "signature_def": {
                "signature_def": {
                    DEFAULT_SIGNATURE: {
                        "inputs": tensors(&spec.inputs),
                        "outputs": tensors(&spec.outputs),
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        }
    })
}

fn tensor_info(spec: &ModelSpec, t: &TensorSpec) -> Value {
    let dims: Vec<Value> = spec
        .full_dims(t)
        .iter()
        .map(|d| json!({ "size": d.to_string(), "name": "" }))
        .collect();
    json!({
        "dtype": tf_dtype(t.datatype),
        "tensor_shape": { "dim": dims, "unknown_rank": false },
        "name": t.name,
    })
}

/// TensorFlow's DataType enum names.
fn tf_dtype(dt: DataType) -> &'static str {
    match dt {
        DataType::Bool => "DT_BOOL",
        DataType::U8 => "DT_UINT8",
        DataType::U16 => "DT_UINT16",
        DataType::U32 => "DT_UINT32",
        DataType::U64 => "DT_UINT64",
        DataType::I8 => "DT_INT8",
        DataType::I16 => "DT_INT16",
        DataType::I32 => "DT_INT32",
        DataType::I64 => "DT_INT64",
        DataType::F16 => "DT_HALF",
        DataType::F32 => "DT_FLOAT",
        DataType::F64 => "DT_DOUBLE",
        DataType::BF16 => "DT_BFLOAT16",
        DataType::Bytes => "DT_STRING",
    }
}
