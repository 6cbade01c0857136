//! Model metadata and Triton-shaped model configuration (the model configuration extension).

use inferd_core::{DataType, TensorSpec, VersionPolicy, Warmup, WarmupData};
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
        "model_warmup": spec.config.warmup.iter().enumerate().map(|(i, w)| {
            let inputs: serde_json::Map<String, Value> = warmup_inputs(spec, w)
                .into_iter()
                .map(|input| {
                    let mut row = json!({ "data_type": input.datatype.config_name(), "dims": input.dims });
                    match input.source {
                        WarmupSource::Zero => row["zero_data"] = json!(true),
                        WarmupSource::Random => row["random_data"] = json!(true),
                        WarmupSource::File(file) => row["input_data_file"] = json!(file),
                    }
                    (input.name, row)
                })
                .collect();
            json!({ "name": format!("warmup_{}", i + 1), "batch_size": w.batch_size, "count": w.count, "inputs": inputs })
        }).collect::<Vec<_>>(),
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

/// Where a warmup input's data comes from, as Triton's model_warmup says it.
pub enum WarmupSource {
    Zero,
    Random,
    /// Relative to `<model>/warmup/`, Triton's place for sample files.
    File(String),
}

pub struct WarmupInput {
    pub name: String,
    pub datatype: DataType,
    pub dims: Vec<i64>,
    pub source: WarmupSource,
}

/// A warmup entry's inputs in Triton's terms, shared by the REST and gRPC config answers.
pub fn warmup_inputs(spec: &ModelSpec, warmup: &Warmup) -> Vec<WarmupInput> {
    spec.inputs
        .iter()
        .map(|t| WarmupInput {
            name: t.name.clone(),
            datatype: t.datatype,
            dims: warmup
                .dims
                .get(&t.name)
                .cloned()
                .unwrap_or_else(|| t.dims.clone()),
            source: match (warmup.files.get(&t.name), warmup.data) {
                (Some(file), _) => WarmupSource::File(
                    file.strip_prefix("warmup/")
                        .map_or_else(|| format!("../{file}"), str::to_string),
                ),
                (None, WarmupData::Random) => WarmupSource::Random,
                (None, WarmupData::Zero) => WarmupSource::Zero,
            },
        })
        .collect()
}
