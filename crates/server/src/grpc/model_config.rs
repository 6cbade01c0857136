//! Model metadata and configuration as gRPC messages (the same facts as HTTP's JSON).

use std::collections::HashMap;

use inferd_core::{DataType, TensorSpec, VersionPolicy};
use inferd_runtime::ModelSpec;

use super::pb;
use crate::v2::model_config::{self, WarmupSource};

pub fn metadata(spec: &ModelSpec, versions: &[u64]) -> pb::ModelMetadataResponse {
    let tensors = |specs: &[TensorSpec]| {
        specs
            .iter()
            .map(|t| pb::model_metadata_response::TensorMetadata {
                name: t.name.clone(),
                datatype: t.datatype.as_str().to_string(),
                shape: spec.full_dims(t),
            })
            .collect()
    };
    pb::ModelMetadataResponse {
        name: spec.name.clone(),
        versions: versions.iter().map(u64::to_string).collect(),
        platform: spec.platform.to_string(),
        inputs: tensors(&spec.inputs),
        outputs: tensors(&spec.outputs),
    }
}

fn data_type(dt: DataType) -> pb::DataType {
    match dt {
        DataType::Bool => pb::DataType::TypeBool,
        DataType::U8 => pb::DataType::TypeUint8,
        DataType::U16 => pb::DataType::TypeUint16,
        DataType::U32 => pb::DataType::TypeUint32,
        DataType::U64 => pb::DataType::TypeUint64,
        DataType::I8 => pb::DataType::TypeInt8,
        DataType::I16 => pb::DataType::TypeInt16,
        DataType::I32 => pb::DataType::TypeInt32,
        DataType::I64 => pb::DataType::TypeInt64,
        DataType::F16 => pb::DataType::TypeFp16,
        DataType::F32 => pb::DataType::TypeFp32,
        DataType::F64 => pb::DataType::TypeFp64,
        DataType::BF16 => pb::DataType::TypeBf16,
        DataType::Bytes => pb::DataType::TypeString,
    }
}

/// What perf_analyzer and model_analyzer read before they start.
pub fn config(spec: &ModelSpec) -> pb::ModelConfig {
    use pb::model_version_policy::{All, Latest, PolicyChoice, Specific};
    let policy = match &spec.config.version_policy {
        VersionPolicy::Latest(n) => PolicyChoice::Latest(Latest { num_versions: *n }),
        VersionPolicy::All => PolicyChoice::All(All {}),
        VersionPolicy::Specific(v) => PolicyChoice::Specific(Specific {
            versions: v.iter().map(|x| *x as i64).collect(),
        }),
    };
    let input = spec
        .inputs
        .iter()
        .map(|t| pb::ModelInput {
            name: t.name.clone(),
            data_type: data_type(t.datatype) as i32,
            dims: t.dims.clone(),
            ..Default::default()
        })
        .collect();
    let output = spec
        .outputs
        .iter()
        .map(|t| pb::ModelOutput {
            name: t.name.clone(),
            data_type: data_type(t.datatype) as i32,
            dims: t.dims.clone(),
            ..Default::default()
        })
        .collect();
    let parameters: HashMap<String, pb::ModelParameter> = spec
        .config
        .parameters
        .keys()
        .filter_map(|k| {
            Some((
                k.clone(),
                pb::ModelParameter {
                    string_value: spec.config.parameter(k)?,
                },
            ))
        })
        .collect();
    let b = &spec.batching;
    let scheduling_choice = (b.enabled && spec.max_batch_size > 0).then(|| {
        pb::model_config::SchedulingChoice::DynamicBatching(pb::ModelDynamicBatching {
            preferred_batch_size: b.preferred_batch_sizes.iter().map(|s| *s as i32).collect(),
            max_queue_delay_microseconds: b.max_queue_delay_us,
            priority_levels: u64::from(b.priority_levels),
            default_priority_level: u64::from(b.default_priority_level),
            default_queue_policy: Some(pb::ModelQueuePolicy {
                default_timeout_microseconds: b.default_timeout_us,
                max_queue_size: b.max_queue_size,
                ..Default::default()
            }),
            ..Default::default()
        })
    });
    pb::ModelConfig {
        name: spec.name.clone(),
        platform: spec.platform.to_string(),
        backend: spec.backend.to_string(),
        version_policy: Some(pb::ModelVersionPolicy {
            policy_choice: Some(policy),
        }),
        max_batch_size: spec.max_batch_size as i32,
        input,
        output,
        scheduling_choice,
        instance_group: vec![pb::ModelInstanceGroup {
            name: format!("{}_0", spec.name),
            kind: pb::model_instance_group::Kind::Cpu as i32,
            count: spec.instance_count as i32,
            ..Default::default()
        }],
        parameters,
        model_warmup: spec
            .config
            .warmup
            .iter()
            .enumerate()
            .map(|(i, w)| warmup(spec, i, w))
            .collect(),
        model_transaction_policy: Some(pb::ModelTransactionPolicy { decoupled: false }),
        ..Default::default()
    }
}

fn warmup(spec: &ModelSpec, index: usize, w: &inferd_core::Warmup) -> pb::ModelWarmup {
    use pb::model_warmup::input::InputDataType;
    let inputs = model_config::warmup_inputs(spec, w)
        .into_iter()
        .map(|input| {
            let data = match input.source {
                WarmupSource::Zero => InputDataType::ZeroData(true),
                WarmupSource::Random => InputDataType::RandomData(true),
                WarmupSource::File(file) => InputDataType::InputDataFile(file),
            };
            let pb_input = pb::model_warmup::Input {
                data_type: data_type(input.datatype) as i32,
                dims: input.dims,
                input_data_type: Some(data),
            };
            (input.name, pb_input)
        })
        .collect();
    pb::ModelWarmup {
        name: format!("warmup_{}", index + 1),
        batch_size: w.batch_size,
        inputs,
        count: w.count,
    }
}
