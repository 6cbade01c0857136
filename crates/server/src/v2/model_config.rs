//! Model metadata and Triton-shaped model configuration (the model configuration extension).

use inferd_core::{TensorSpec, VersionPolicy};
use inferd_runtime::ModelSpec;
use serde_json::{Value, json};

/// `GET /v2/models/{m}`: name, ready versions, platform and full tensor shapes.
pub fn metadata(spec: &ModelSpec, versions: &[u64]) -> Value {
    let tensors = |specs: &[TensorSpec]| -> Vec<Value> {
        specs
            .iter()
            .map(|t| json!({ "name": t.name, "datatype": t.datatype.as_str(), "shape": spec.full_dims(t) }))
            .collect()
    };
    json!({
        "name": spec.name,
        "versions": versions.iter().map(u64::to_string).collect::<Vec<_>>(),
        "platform": spec.platform,
        "inputs": tensors(&spec.inputs),
        "outputs": tensors(&spec.outputs),
    })
}

/// `GET /v2/models/{m}/config`: the served configuration in Triton's JSON shape, which
/// perf_analyzer and model_analyzer read before they start.
pub fn config(spec: &ModelSpec) -> Value {
    let input: Vec<Value> = spec
        .inputs
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "data_type": t.datatype.config_name(),
                "format": "FORMAT_NONE",
                "dims": t.dims,
                "is_shape_tensor": false,
                "allow_ragged_batch": false,
                "optional": false,
            })
        })
        .collect();
    let output: Vec<Value> = spec
        .outputs
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "data_type": t.datatype.config_name(),
                "dims": t.dims,
                "label_filename": "",
                "is_shape_tensor": false,
            })
        })
        .collect();
    let version_policy = match &spec.config.version_policy {
        VersionPolicy::Latest(n) => json!({ "latest": { "num_versions": n } }),
        VersionPolicy::All => json!({ "all": {} }),
        VersionPolicy::Specific(v) => json!({ "specific": { "versions": v } }),
    };
    let parameters: serde_json::Map<String, Value> = spec
        .config
        .parameters
        .keys()
        .filter_map(|k| {
            Some((
                k.clone(),
                json!({ "string_value": spec.config.parameter(k)? }),
            ))
        })
        .collect();
    let mut config = json!({
        "name": spec.name,
        "platform": spec.platform,
        "backend": spec.backend,
        "version_policy": version_policy,
        "max_batch_size": spec.max_batch_size,
        "input": input,
        "output": output,
        "instance_group": [{
            "name": format!("{}_0", spec.name),
            "kind": "KIND_CPU",
            "count": spec.instance_count,
            "gpus": [],
            "profile": [],
            "passive": false,
            "host_policy": "",
        }],
        "parameters": parameters,
        "model_warmup": [],
    });
    let b = &spec.batching;
    if b.enabled && spec.max_batch_size > 0 {
        config["dynamic_batching"] = json!({
            "preferred_batch_size": b.preferred_batch_sizes,
            "max_queue_delay_microseconds": b.max_queue_delay_us,
            "priority_levels": b.priority_levels,
            "default_priority_level": b.default_priority_level,
            "default_queue_policy": {
                "default_timeout_microseconds": b.default_timeout_us,
                "max_queue_size": b.max_queue_size,
            },
        });
    }
    config
}
