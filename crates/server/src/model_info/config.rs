//! The model configuration extension (`GET /v2/models/{m}/config`, gRPC ModelConfig): the
//! served configuration in Triton's shape, which perf_analyzer and model_analyzer read before
//! they start. The JSON form is Triton's (protobuf field names, enum names, numbers as numbers).

use std::collections::BTreeMap;

use inferd_core::{DataType, Reshape, VersionPolicy as Policy, Warmup as WarmupConfig, WarmupData};
use inferd_runtime::ModelSpec;
use serde::Serialize;

use super::sequence::SequenceBatching;
use crate::pb;

#[derive(Debug, Clone, Serialize)]
pub struct ModelConfiguration {
    pub name: String,
    pub platform: String,
    pub backend: String,
    pub version_policy: VersionPolicy,
    pub max_batch_size: u32,
    pub input: Vec<Input>,
    pub output: Vec<Output>,
    /// Present when the dynamic batcher merges this model's requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_batching: Option<DynamicBatching>,
    /// Present for sequence models (instead of dynamic_batching).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence_batching: Option<SequenceBatching>,
    /// Present for ensembles: their steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ensemble_scheduling: Option<EnsembleScheduling>,
    pub instance_group: Vec<InstanceGroup>,
    pub parameters: BTreeMap<String, Parameter>,
    pub model_warmup: Vec<Warmup>,
    pub model_transaction_policy: TransactionPolicy,
    pub response_cache: ResponseCache,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResponseCache {
    pub enable: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionPolicy {
    Latest { num_versions: u32 },
    All {},
    Specific { versions: Vec<i64> },
}

#[derive(Debug, Clone, Serialize)]
pub struct Input {
    pub name: String,
    #[serde(serialize_with = "type_name")]
    pub data_type: DataType,
    pub format: &'static str,
    pub dims: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reshape: Option<Reshape>,
    pub is_shape_tensor: bool,
    pub allow_ragged_batch: bool,
    pub optional: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub name: String,
    #[serde(serialize_with = "type_name")]
    pub data_type: DataType,
    pub dims: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reshape: Option<Reshape>,
    pub label_filename: String,
    pub is_shape_tensor: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DynamicBatching {
    pub preferred_batch_size: Vec<i32>,
    pub max_queue_delay_microseconds: u64,
    pub priority_levels: u64,
    pub default_priority_level: u64,
    pub default_queue_policy: QueuePolicy,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnsembleScheduling {
    pub step: Vec<EnsembleStep>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnsembleStep {
    pub model_name: String,
    /// -1: the version the step model's router chooses.
    pub model_version: i64,
    pub input_map: BTreeMap<String, String>,
    pub output_map: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueuePolicy {
    pub default_timeout_microseconds: u64,
    pub max_queue_size: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceGroup {
    pub name: String,
    pub kind: &'static str,
    pub count: i32,
    pub gpus: Vec<i32>,
    pub profile: Vec<String>,
    pub passive: bool,
    pub host_policy: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Parameter {
    pub string_value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Warmup {
    pub name: String,
    pub batch_size: u32,
    pub count: u32,
    pub inputs: BTreeMap<String, WarmupInput>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WarmupInput {
    #[serde(serialize_with = "type_name")]
    pub data_type: DataType,
    pub dims: Vec<i64>,
    #[serde(flatten)]
    pub source: WarmupSource,
}

/// Where a warmup input's data comes from, as Triton's model_warmup says it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmupSource {
    ZeroData(bool),
    RandomData(bool),
    /// Relative to `<model>/warmup/`, Triton's place for sample files.
    InputDataFile(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct TransactionPolicy {
    pub decoupled: bool,
}

pub(super) fn type_name<S: serde::Serializer>(dt: &DataType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(dt.config_name())
}

impl ModelConfiguration {
    pub fn of(spec: &ModelSpec) -> ModelConfiguration {
        let version_policy = match &spec.config.version_policy {
            Policy::Latest(n) => VersionPolicy::Latest { num_versions: *n },
            Policy::All => VersionPolicy::All {},
            Policy::Specific(v) => VersionPolicy::Specific {
                versions: v.iter().map(|x| *x as i64).collect(),
            },
        };
        let input = spec
            .inputs
            .iter()
            .map(|t| Input {
                name: t.name.clone(),
                data_type: t.datatype,
                format: t.format.map_or("FORMAT_NONE", |f| f.triton_name()),
                dims: t.dims.clone(),
                reshape: t.reshape.clone(),
                is_shape_tensor: false,
                allow_ragged_batch: false,
                optional: false,
            })
            .collect();
        let output = spec
            .outputs
            .iter()
            .map(|t| Output {
                name: t.name.clone(),
                data_type: t.datatype,
                dims: t.dims.clone(),
                reshape: t.reshape.clone(),
                label_filename: t.label_filename.clone().unwrap_or_default(),
                is_shape_tensor: false,
            })
            .collect();
        let b = &spec.batching;
        let sequence_batching = spec
            .sequence
            .as_ref()
            .map(|layout| SequenceBatching::of(&layout.config));
        let dynamic_batching =
            (spec.batches() && sequence_batching.is_none()).then(|| DynamicBatching {
                preferred_batch_size: b.preferred_batch_sizes.iter().map(|s| *s as i32).collect(),
                max_queue_delay_microseconds: b.max_queue_delay_us,
                priority_levels: u64::from(b.priority_levels),
                default_priority_level: u64::from(b.default_priority_level),
                default_queue_policy: QueuePolicy {
                    default_timeout_microseconds: b.default_timeout_us,
                    max_queue_size: b.max_queue_size,
                },
            });
        let parameters = spec
            .config
            .parameters
            .keys()
            .filter_map(|k| {
                let string_value = spec.config.parameter(k)?;
                Some((k.clone(), Parameter { string_value }))
            })
            .collect();
        let ensemble_scheduling = spec.config.ensemble.as_ref().map(|e| EnsembleScheduling {
            step: e
                .step
                .iter()
                .map(|s| EnsembleStep {
                    model_name: s.model.clone(),
                    model_version: s.version.map_or(-1, |v| v as i64),
                    input_map: s.input_map.clone(),
                    output_map: s.output_map.clone(),
                })
                .collect(),
        });
        // Triton's ensembles have no backend and no instances of their own.
        let (backend, instance_group) = if ensemble_scheduling.is_some() {
            (String::new(), Vec::new())
        } else {
            (
                spec.backend.to_string(),
                vec![InstanceGroup {
                    name: format!("{}_0", spec.name),
                    kind: "KIND_CPU",
                    count: spec.instance_count as i32,
                    gpus: Vec::new(),
                    profile: Vec::new(),
                    passive: false,
                    host_policy: String::new(),
                }],
            )
        };
        ModelConfiguration {
            name: spec.name.clone(),
            platform: spec.platform.to_string(),
            backend,
            version_policy,
            max_batch_size: spec.max_batch_size,
            input,
            output,
            dynamic_batching,
            sequence_batching,
            ensemble_scheduling,
            instance_group,
            parameters,
            model_warmup: spec
                .config
                .warmup
                .iter()
                .enumerate()
                .map(|(i, w)| warmup(spec, i, w))
                .collect(),
            model_transaction_policy: TransactionPolicy {
                decoupled: spec.config.is_decoupled(),
            },
            response_cache: ResponseCache {
                enable: spec.config.caches_responses(),
            },
        }
    }
}

fn warmup(spec: &ModelSpec, index: usize, w: &WarmupConfig) -> Warmup {
    let inputs = spec
        .inputs
        .iter()
        .map(|t| {
            let source = match (w.files.get(&t.name), w.data) {
                (Some(file), _) => WarmupSource::InputDataFile(
                    file.strip_prefix("warmup/")
                        .map_or_else(|| format!("../{file}"), str::to_string),
                ),
                (None, WarmupData::Random) => WarmupSource::RandomData(true),
                (None, WarmupData::Zero) => WarmupSource::ZeroData(true),
            };
            let input = WarmupInput {
                data_type: t.datatype,
                dims: w
                    .dims
                    .get(&t.name)
                    .cloned()
                    .unwrap_or_else(|| t.dims.clone()),
                source,
            };
            (t.name.clone(), input)
        })
        .collect();
    Warmup {
        name: format!("warmup_{}", index + 1),
        batch_size: w.batch_size,
        count: w.count,
        inputs,
    }
}

pub(super) fn data_type(dt: DataType) -> i32 {
    let t = match dt {
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
    };
    t as i32
}

impl From<ModelConfiguration> for pb::ModelConfig {
    fn from(c: ModelConfiguration) -> Self {
        use pb::model_version_policy::{All, Latest, PolicyChoice, Specific};
        let ModelConfiguration {
            name,
            platform,
            backend,
            version_policy,
            max_batch_size,
            input,
            output,
            dynamic_batching,
            sequence_batching,
            ensemble_scheduling,
            instance_group,
            parameters,
            model_warmup,
            model_transaction_policy,
            response_cache,
        } = c;
        let policy = match version_policy {
            VersionPolicy::Latest { num_versions } => PolicyChoice::Latest(Latest { num_versions }),
            VersionPolicy::All {} => PolicyChoice::All(All {}),
            VersionPolicy::Specific { versions } => PolicyChoice::Specific(Specific { versions }),
        };
        let input = input
            .into_iter()
            .map(|i| {
                let Input {
                    name,
                    data_type: dt,
                    format,
                    dims,
                    reshape,
                    is_shape_tensor,
                    allow_ragged_batch,
                    optional,
                } = i;
                pb::ModelInput {
                    name,
                    data_type: data_type(dt),
                    format: pb::model_input::Format::from_str_name(format).unwrap_or_default()
                        as i32,
                    dims,
                    reshape: reshape.map(|r| pb::ModelTensorReshape { shape: r.shape }),
                    is_shape_tensor,
                    allow_ragged_batch,
                    optional,
                }
            })
            .collect();
        let output = output
            .into_iter()
            .map(|o| {
                let Output {
                    name,
                    data_type: dt,
                    dims,
                    reshape,
                    label_filename,
                    is_shape_tensor,
                } = o;
                pb::ModelOutput {
                    name,
                    data_type: data_type(dt),
                    dims,
                    reshape: reshape.map(|r| pb::ModelTensorReshape { shape: r.shape }),
                    label_filename,
                    is_shape_tensor,
                }
            })
            .collect();
        let scheduling_choice = dynamic_batching.map(|d| {
            let DynamicBatching {
                preferred_batch_size,
                max_queue_delay_microseconds,
                priority_levels,
                default_priority_level,
                default_queue_policy,
            } = d;
            let QueuePolicy {
                default_timeout_microseconds,
                max_queue_size,
            } = default_queue_policy;
            pb::model_config::SchedulingChoice::DynamicBatching(pb::ModelDynamicBatching {
                preferred_batch_size,
                max_queue_delay_microseconds,
                priority_levels,
                default_priority_level,
                default_queue_policy: Some(pb::ModelQueuePolicy {
                    default_timeout_microseconds,
                    max_queue_size,
                    ..Default::default()
                }),
                ..Default::default()
            })
        });
        let scheduling_choice = scheduling_choice.or_else(|| {
            sequence_batching
                .map(|s| pb::model_config::SchedulingChoice::SequenceBatching(s.into()))
        });
        let scheduling_choice = scheduling_choice.or_else(|| {
            let step = ensemble_scheduling?
                .step
                .into_iter()
                .map(|s| pb::model_ensembling::Step {
                    model_name: s.model_name,
                    model_version: s.model_version,
                    input_map: s.input_map.into_iter().collect(),
                    output_map: s.output_map.into_iter().collect(),
                    model_namespace: String::new(),
                })
                .collect();
            Some(pb::model_config::SchedulingChoice::EnsembleScheduling(
                pb::ModelEnsembling { step },
            ))
        });
        let instance_group = instance_group
            .into_iter()
            .map(|g| {
                let InstanceGroup {
                    name,
                    kind,
                    count,
                    gpus,
                    profile,
                    passive,
                    host_policy,
                } = g;
                pb::ModelInstanceGroup {
                    name,
                    kind: pb::model_instance_group::Kind::from_str_name(kind).unwrap_or_default()
                        as i32,
                    count,
                    gpus,
                    profile,
                    passive,
                    host_policy,
                }
            })
            .collect();
        let parameters = parameters
            .into_iter()
            .map(|(k, Parameter { string_value })| (k, pb::ModelParameter { string_value }))
            .collect();
        let model_warmup = model_warmup
            .into_iter()
            .map(|w| {
                use pb::model_warmup::input::InputDataType;
                let Warmup {
                    name,
                    batch_size,
                    count,
                    inputs,
                } = w;
                let inputs = inputs
                    .into_iter()
                    .map(|(k, i)| {
                        let WarmupInput {
                            data_type: dt,
                            dims,
                            source,
                        } = i;
                        let data = match source {
                            WarmupSource::ZeroData(b) => InputDataType::ZeroData(b),
                            WarmupSource::RandomData(b) => InputDataType::RandomData(b),
                            WarmupSource::InputDataFile(f) => InputDataType::InputDataFile(f),
                        };
                        let input = pb::model_warmup::Input {
                            data_type: data_type(dt),
                            dims,
                            input_data_type: Some(data),
                        };
                        (k, input)
                    })
                    .collect();
                pb::ModelWarmup {
                    name,
                    batch_size,
                    inputs,
                    count,
                }
            })
            .collect();
        let TransactionPolicy { decoupled } = model_transaction_policy;
        pb::ModelConfig {
            name,
            platform,
            backend,
            version_policy: Some(pb::ModelVersionPolicy {
                policy_choice: Some(policy),
            }),
            max_batch_size: max_batch_size as i32,
            input,
            output,
            scheduling_choice,
            instance_group,
            parameters,
            model_warmup,
            model_transaction_policy: Some(pb::ModelTransactionPolicy { decoupled }),
            response_cache: Some(pb::ModelResponseCache {
                enable: response_cache.enable,
            }),
            ..Default::default()
        }
    }
}
