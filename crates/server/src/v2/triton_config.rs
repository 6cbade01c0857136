//! Reading a model configuration in Triton's JSON shape: what `/config` answers and what
//! tritonclient users pass to `load_model(config=...)`, so a fetched config can be edited and
//! sent back. Fields inferd has are mapped; the ones it cannot honour are refused by name.

use std::collections::BTreeMap;

use inferd_core::{
    ControlInput, ControlKind, DataType, DynamicBatching, ENSEMBLE_PLATFORM, EnsembleConfig,
    EnsembleStep, ModelConfig, SequenceBatching, SequenceState, SequenceStrategy, TensorFormat,
    TensorSpec, VersionPolicy, Warmup, WarmupData,
};
use serde_json::{Map, Value};

/// Sections that change what a model computes or where; silently dropping them would serve
/// something other than what the user asked for.
const UNSUPPORTED: &[&str] = &["batch_input", "batch_output"];

/// Every field of Triton's ModelConfig; a key outside it is a typo, not something to ignore.
/// Those not mapped or refused above are accepted and have no effect here (e.g. `optimization`).
const TRITON_FIELDS: &[&str] = &[
    "name",
    "platform",
    "backend",
    "runtime",
    "version_policy",
    "max_batch_size",
    "input",
    "output",
    "batch_input",
    "batch_output",
    "optimization",
    "dynamic_batching",
    "sequence_batching",
    "ensemble_scheduling",
    "instance_group",
    "default_model_filename",
    "cc_model_filenames",
    "metric_tags",
    "parameters",
    "model_warmup",
    "model_operations",
    "model_transaction_policy",
    "model_repository_agents",
    "response_cache",
];

pub fn from_triton_json(value: &Value) -> Result<ModelConfig, String> {
    let object = value
        .as_object()
        .ok_or("the configuration must be a JSON object")?;
    if let Some(key) = object.keys().find(|k| !TRITON_FIELDS.contains(&k.as_str())) {
        return Err(format!("unknown field '{key}'"));
    }
    if let Some(key) = UNSUPPORTED.iter().find(|k| object.contains_key(**k)) {
        return Err(format!("'{key}' is not supported by inferd"));
    }
    let decoupled = object
        .get("model_transaction_policy")
        .and_then(|p| p.get("decoupled"))
        .and_then(Value::as_bool);
    let text = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let is_ensemble = text("platform") == Some(ENSEMBLE_PLATFORM);
    let config = ModelConfig {
        platform: is_ensemble.then(|| ENSEMBLE_PLATFORM.to_string()),
        ensemble: object
            .get("ensemble_scheduling")
            .map(ensemble_scheduling)
            .transpose()?,
        backend: text("backend").map(str::to_string),
        max_batch_size: optional_number(object, "max_batch_size")?
            .map(|n| u32::try_from(n).map_err(|_| format!("max_batch_size {n} is too large")))
            .transpose()?,
        inputs: tensors(object, "input")?,
        outputs: tensors(object, "output")?,
        instance_count: instance_count(object)?,
        pinned: false,
        response_cache: object
            .get("response_cache")
            .and_then(|c| c.get("enable"))
            .and_then(Value::as_bool)
            .map(|enabled| inferd_core::ResponseCacheConfig { enabled }),
        model_transaction_policy: decoupled
            .map(|decoupled| inferd_core::TransactionPolicy { decoupled }),
        sequence_batching: object
            .get("sequence_batching")
            .map(sequence_batching)
            .transpose()?,
        // An ensemble's steps batch; it has no scheduler of its own; a sequence model batches
        // by its sequence batcher.
        dynamic_batching: if is_ensemble || object.contains_key("sequence_batching") {
            None
        } else {
            Some(dynamic_batching(object.get("dynamic_batching"))?)
        },
        version_policy: version_policy(object.get("version_policy"))?,
        parameters: parameters(object.get("parameters"))?,
        warmup: warmups(object.get("model_warmup"))?,
        traffic: None,
        audit: None,
        source: None,
    };
    config.validate()?;
    Ok(config)
}

/// Triton's `ensemble_scheduling.step`: `model_version` -1 (or absent) lets the router choose.
fn ensemble_scheduling(value: &Value) -> Result<EnsembleConfig, String> {
    let step = list(value.get("step"), "ensemble_scheduling.step")?
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let what = format!("ensemble_scheduling.step[{i}]");
            let model = s
                .get("model_name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{what} needs a 'model_name'"))?;
            let version = match s.get("model_version") {
                None | Some(Value::Null) => None,
                Some(v) => match signed(v, "model_version")? {
                    -1 => None,
                    n => Some(u64::try_from(n).map_err(|_| {
                        format!("{what}: model_version {n} is neither -1 (latest) nor a version")
                    })?),
                },
            };
            let map = |key: &str| -> Result<BTreeMap<String, String>, String> {
                match s.get(key) {
                    None | Some(Value::Null) => Ok(BTreeMap::new()),
                    Some(Value::Object(m)) => m
                        .iter()
                        .map(|(k, v)| {
                            let v = v.as_str().ok_or_else(|| {
                                format!("{what}.{key}['{k}'] must be a tensor name")
                            })?;
                            Ok((k.clone(), v.to_string()))
                        })
                        .collect(),
                    Some(other) => Err(format!("{what}.{key} must be an object, got {other}")),
                }
            };
            Ok(EnsembleStep {
                model: model.to_string(),
                version,
                input_map: map("input_map")?,
                output_map: map("output_map")?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(EnsembleConfig { step })
}

/// An integer that proto3 JSON may write as a number or as a string (int64 fields).
fn number(value: &Value, what: &str) -> Result<u64, String> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("'{what}' must be a non-negative integer, got {value}"))
}

fn signed(value: &Value, what: &str) -> Result<i64, String> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("'{what}' must be an integer, got {value}"))
}

fn optional_number(object: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    object.get(key).map(|v| number(v, key)).transpose()
}

fn list<'a>(value: Option<&'a Value>, what: &str) -> Result<&'a [Value], String> {
    match value {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(format!("'{what}' must be a list, got {other}")),
    }
}

fn dims(value: Option<&Value>, what: &str) -> Result<Vec<i64>, String> {
    list(value, what)?.iter().map(|d| signed(d, what)).collect()
}

fn tensors(object: &Map<String, Value>, key: &str) -> Result<Vec<TensorSpec>, String> {
    list(object.get(key), key)?
        .iter()
        .map(|t| {
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("every '{key}' needs a 'name'"))?;
            let datatype = t
                .get("data_type")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{key} '{name}' needs a 'data_type'"))?
                .parse()
                .map_err(|e| format!("{key} '{name}': {e}"))?;
            Ok(TensorSpec {
                name: name.to_string(),
                datatype,
                dims: dims(t.get("dims"), &format!("{key} '{name}' dims"))?,
                label_filename: t
                    .get("label_filename")
                    .and_then(Value::as_str)
                    .filter(|f| !f.is_empty())
                    .map(str::to_string),
                reshape: t
                    .get("reshape")
                    .map(|r| {
                        let shape = dims(r.get("shape"), &format!("{key} '{name}' reshape"))?;
                        Ok::<_, String>(inferd_core::Reshape { shape })
                    })
                    .transpose()?,
                format: match t.get("format").and_then(Value::as_str) {
                    None => None,
                    Some(f) => Some(TensorFormat::parse(f).ok_or_else(|| {
                        format!(
                            "{key} '{name}' format {f}: FORMAT_NONE, FORMAT_NHWC or FORMAT_NCHW"
                        )
                    })?),
                },
            })
        })
        .collect()
}

fn instance_count(object: &Map<String, Value>) -> Result<Option<u32>, String> {
    let groups = list(object.get("instance_group"), "instance_group")?;
    if groups.is_empty() {
        return Ok(None);
    }
    let mut total = 0;
    for group in groups {
        match group.get("kind").and_then(Value::as_str) {
            None | Some("KIND_AUTO" | "KIND_CPU" | "KIND_MODEL") => {}
            Some(kind) => {
                return Err(format!(
                    "instance_group kind {kind} is not supported; inferd runs instances on the CPU"
                ));
            }
        }
        let count = group
            .get("count")
            .map(|c| number(c, "instance_group count"))
            .transpose()?
            .unwrap_or(1);
        total = count.saturating_add(total);
    }
    // An absurd total is refused by the config's validation, not truncated.
    Ok(Some(u32::try_from(total).unwrap_or(u32::MAX)))
}

/// Without the section Triton does not batch, so neither does the translated config.
fn dynamic_batching(value: Option<&Value>) -> Result<DynamicBatching, String> {
    let Some(section) = value.and_then(Value::as_object) else {
        return Ok(DynamicBatching {
            enabled: false,
            ..DynamicBatching::default()
        });
    };
    let mut b = DynamicBatching::default();
    let field = |key: &str| section.get(key).map(|v| number(v, key)).transpose();
    if let Some(us) = field("max_queue_delay_microseconds")? {
        b.max_queue_delay_us = us;
    }
    b.preferred_batch_sizes = list(section.get("preferred_batch_size"), "preferred_batch_size")?
        .iter()
        .map(|v| number(v, "preferred_batch_size").map(|n| n as u32))
        .collect::<Result<_, _>>()?;
    if let Some(n) = field("priority_levels")?.filter(|n| *n > 0) {
        b.priority_levels = n as u32;
    }
    if let Some(n) = field("default_priority_level")?.filter(|n| *n > 0) {
        b.default_priority_level = n as u32;
    }
    if let Some(policy) = section
        .get("default_queue_policy")
        .and_then(Value::as_object)
    {
        let policy_field = |key: &str| policy.get(key).map(|v| number(v, key)).transpose();
        if let Some(n) = policy_field("max_queue_size")? {
            b.max_queue_size = n as u32;
        }
        if let Some(us) = policy_field("default_timeout_microseconds")? {
            b.default_timeout_us = us;
        }
    }
    Ok(b)
}

/// Triton's `sequence_batching`: strategy, idle time, control inputs and implicit state.
fn sequence_batching(value: &Value) -> Result<SequenceBatching, String> {
    let what = "sequence_batching";
    let section = value
        .as_object()
        .ok_or_else(|| format!("'{what}' must be an object"))?;
    let mut b = SequenceBatching::default();
    if let Some(us) = optional_number(section, "max_sequence_idle_microseconds")? {
        b.max_sequence_idle_us = us;
    }
    if let Some(direct) = section.get("direct").and_then(Value::as_object) {
        b.strategy = SequenceStrategy::Direct;
        if let Some(us) = optional_number(direct, "max_queue_delay_microseconds")? {
            b.direct.max_queue_delay_us = us;
        }
    }
    if let Some(oldest) = section.get("oldest").and_then(Value::as_object) {
        b.strategy = SequenceStrategy::Oldest;
        if let Some(n) = optional_number(oldest, "max_candidate_sequences")? {
            b.oldest.max_candidate_sequences = n as u32;
        }
        if let Some(us) = optional_number(oldest, "max_queue_delay_microseconds")? {
            b.oldest.max_queue_delay_us = us;
        }
        b.oldest.preferred_batch_sizes =
            list(oldest.get("preferred_batch_size"), "preferred_batch_size")?
                .iter()
                .map(|v| number(v, "preferred_batch_size").map(|n| n as u32))
                .collect::<Result<_, _>>()?;
    }
    for input in list(section.get("control_input"), "control_input")? {
        let name = input
            .get("name")
            .and_then(Value::as_str)
            .ok_or("every control_input needs a 'name'")?;
        for control in list(input.get("control"), "control")? {
            b.control_inputs.push(control_input(name, control)?);
        }
    }
    for state in list(section.get("state"), "state")? {
        let text = |key: &str| {
            state
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("every state needs '{key}'"))
        };
        b.states.push(SequenceState {
            input: text("input_name")?,
            output: text("output_name")?,
            datatype: text("data_type")?
                .parse()
                .map_err(|e| format!("state: {e}"))?,
            dims: dims(state.get("dims"), "state dims")?,
        });
    }
    Ok(b)
}

/// One `control` of a control input: its kind, and its false/true values or CORRID's type.
fn control_input(name: &str, control: &Value) -> Result<ControlInput, String> {
    let kind = match control.get("kind") {
        None => Some(ControlKind::Start),
        Some(k) => k.as_str().and_then(ControlKind::from_triton),
    }
    .ok_or_else(|| {
        format!(
            "control input '{name}': kind {:?} is not known",
            control.get("kind")
        )
    })?;
    let pair = |key: &str| -> Result<Option<[f64; 2]>, String> {
        let values = list(control.get(key), key)?;
        match values {
            [] => Ok(None),
            [f, t] => {
                let v = |x: &Value| x.as_f64().or_else(|| x.as_bool().map(|b| b as u8 as f64));
                match (v(f), v(t)) {
                    (Some(f), Some(t)) => Ok(Some([f, t])),
                    _ => Err(format!(
                        "control input '{name}': {key} must hold two values"
                    )),
                }
            }
            _ => Err(format!(
                "control input '{name}': {key} has two entries (false, true)"
            )),
        }
    };
    let (datatype, false_true) = if let Some(ft) = pair("int32_false_true")? {
        (DataType::I32, Some(ft))
    } else if let Some(ft) = pair("fp32_false_true")? {
        (DataType::F32, Some(ft))
    } else if let Some(ft) = pair("bool_false_true")? {
        (DataType::Bool, Some(ft))
    } else {
        let datatype = control
            .get("data_type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("control input '{name}' needs a data_type or false_true"))?
            .parse()
            .map_err(|e| format!("control input '{name}': {e}"))?;
        (datatype, None)
    };
    Ok(ControlInput {
        name: name.to_string(),
        kind,
        datatype,
        false_true,
    })
}

fn version_policy(value: Option<&Value>) -> Result<VersionPolicy, String> {
    let Some(policy) = value.and_then(Value::as_object) else {
        return Ok(VersionPolicy::default());
    };
    if let Some(latest) = policy.get("latest") {
        let n = latest
            .get("num_versions")
            .map_or(Ok(1), |v| number(v, "num_versions"))?;
        return Ok(VersionPolicy::Latest(n as u32));
    }
    if policy.contains_key("all") {
        return Ok(VersionPolicy::All);
    }
    if let Some(specific) = policy.get("specific") {
        let versions = list(specific.get("versions"), "specific versions")?
            .iter()
            .map(|v| number(v, "specific versions"))
            .collect::<Result<_, _>>()?;
        return Ok(VersionPolicy::Specific(versions));
    }
    Err("version_policy needs 'latest', 'all' or 'specific'".into())
}

fn parameters(value: Option<&Value>) -> Result<BTreeMap<String, toml::Value>, String> {
    let Some(parameters) = value.and_then(Value::as_object) else {
        return Ok(BTreeMap::new());
    };
    parameters
        .iter()
        .map(|(key, v)| {
            let s = v
                .get("string_value")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("parameter '{key}' needs a 'string_value'"))?;
            Ok((key.clone(), toml::Value::String(s.to_string())))
        })
        .collect()
}

fn warmups(value: Option<&Value>) -> Result<Vec<Warmup>, String> {
    list(value, "model_warmup")?
        .iter()
        .map(|w| {
            let field = |key: &str| w.get(key).map(|v| number(v, key)).transpose();
            let mut warmup = Warmup {
                batch_size: field("batch_size")?.unwrap_or(1).max(1) as u32,
                count: field("count")?.unwrap_or(1).max(1) as u32,
                data: WarmupData::Zero,
                files: BTreeMap::new(),
                dims: BTreeMap::new(),
            };
            let inputs = w.get("inputs").and_then(Value::as_object);
            for (name, input) in inputs.into_iter().flatten() {
                if input.get("random_data").and_then(Value::as_bool) == Some(true) {
                    warmup.data = WarmupData::Random;
                }
                if let Some(file) = input.get("input_data_file").and_then(Value::as_str) {
                    // Triton looks sample files up in <model>/warmup/.
                    warmup.files.insert(name.clone(), format!("warmup/{file}"));
                }
                let input_dims = dims(input.get("dims"), &format!("warmup input '{name}' dims"))?;
                if !input_dims.is_empty() {
                    warmup.dims.insert(name.clone(), input_dims);
                }
            }
            Ok(warmup)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferd_core::DataType;
    use serde_json::json;

    #[test]
    fn maps_triton_fields_including_string_integers() {
        let config = from_triton_json(&json!({
            "name": "iris",
            "platform": "onnxruntime_onnx",
            "max_batch_size": 8,
            "input": [{ "name": "X", "data_type": "TYPE_FP32", "dims": ["4"] }],
            "output": [{ "name": "p", "data_type": "TYPE_FP32", "dims": [3] }],
            "instance_group": [{ "kind": "KIND_CPU", "count": 2 }, { "count": 1 }],
            "dynamic_batching": {
                "max_queue_delay_microseconds": "500",
                "preferred_batch_size": [4, 8],
                "default_queue_policy": { "max_queue_size": 16, "default_timeout_microseconds": 1000 }
            },
            "version_policy": { "specific": { "versions": ["1", 3] } },
            "parameters": { "threads": { "string_value": "2" } },
            "model_warmup": [{ "batch_size": 2, "count": 3,
                "inputs": { "X": { "data_type": "TYPE_FP32", "dims": [4], "random_data": true } } }]
        }))
        .unwrap();
        assert_eq!(config.max_batch_size, Some(8));
        assert_eq!(config.inputs[0].datatype, DataType::F32);
        assert_eq!(config.inputs[0].dims, [4]);
        assert_eq!(config.instance_count, Some(3));
        let b = config.dynamic_batching.clone().unwrap();
        assert!(b.enabled);
        assert_eq!(
            (b.max_queue_delay_us, b.max_queue_size, b.default_timeout_us),
            (500, 16, 1000)
        );
        assert_eq!(b.preferred_batch_sizes, [4, 8]);
        assert_eq!(config.version_policy, VersionPolicy::Specific(vec![1, 3]));
        assert_eq!(config.parameter("threads").as_deref(), Some("2"));
        assert_eq!(
            (
                config.warmup[0].batch_size,
                config.warmup[0].count,
                config.warmup[0].data
            ),
            (2, 3, WarmupData::Random)
        );
    }

    #[test]
    fn no_dynamic_batching_section_means_no_batching() {
        let config = from_triton_json(&json!({ "max_batch_size": 4 })).unwrap();
        assert!(!config.dynamic_batching.unwrap().enabled);
    }

    #[test]
    fn reads_sequence_batching_as_the_config_answers_it() {
        use inferd_core::{ControlInput, ControlKind, DataType, SequenceState};
        let config = SequenceBatching {
            strategy: SequenceStrategy::Oldest,
            max_sequence_idle_us: 5_000_000,
            oldest: inferd_core::OldestStrategy {
                max_candidate_sequences: 4,
                max_queue_delay_us: 100,
                preferred_batch_sizes: vec![2],
            },
            control_inputs: vec![
                ControlInput {
                    name: "S".into(),
                    kind: ControlKind::Start,
                    datatype: DataType::I32,
                    false_true: Some([0.0, 1.0]),
                },
                ControlInput {
                    name: "R".into(),
                    kind: ControlKind::Ready,
                    datatype: DataType::F32,
                    false_true: Some([0.0, 1.0]),
                },
                ControlInput {
                    name: "C".into(),
                    kind: ControlKind::Corrid,
                    datatype: DataType::U64,
                    false_true: None,
                },
            ],
            states: vec![SequenceState {
                input: "IN".into(),
                output: "OUT".into(),
                datatype: DataType::F32,
                dims: vec![2, 3],
            }],
            ..SequenceBatching::default()
        };
        let answered = crate::model_info::sequence::SequenceBatching::of(&config);
        let json = json!({ "sequence_batching": serde_json::to_value(answered).unwrap() });
        let parsed = from_triton_json(&json).unwrap();
        assert_eq!(parsed.sequence_batching, Some(config));
        assert_eq!(parsed.dynamic_batching, None);
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for (config, needle) in [
            (
                json!({ "batch_input": [] }),
                "'batch_input' is not supported",
            ),
            (
                json!({ "sequence_batching": { "control_input": [{ "name": "S", "control": [{
                    "kind": "CONTROL_SEQUENCE_START" }] }] } }),
                "control input 'S' needs a data_type or false_true",
            ),
            (json!({ "max_batch": 8 }), "unknown field 'max_batch'"),
            (
                json!({ "instance_group": [{ "kind": "KIND_GPU" }] }),
                "KIND_GPU",
            ),
            (json!({ "max_batch_size": -1 }), "max_batch_size"),
            (
                json!({ "input": [{ "name": "x", "data_type": "TYPE_NOPE" }] }),
                "TYPE_NOPE",
            ),
        ] {
            let err = from_triton_json(&config).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }
}
