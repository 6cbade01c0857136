use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{
    ConfigError, ConfigText, ENSEMBLE_PLATFORM, EnsembleConfig, SequenceBatching, TensorFormat,
    TensorSpec,
};

/// Name of the optional per-model configuration file, beside the version directories.
pub const CONFIG_FILE: &str = "config.toml";

/// Batch limit given to a model whose inputs all have a dynamic first dimension and whose
/// config does not say otherwise.
pub const DEFAULT_MAX_BATCH_SIZE: u32 = 64;

/// One schema for every backend (`<repo>/<model>/config.toml`); names follow Triton's
/// config.pbtxt so users can map theirs. Fields left out are inferred from the model file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Backend that runs the model; inferred from the model file when absent (`tract` for ONNX).
    pub backend: Option<String>,
    /// 0: the model has no batch dimension. >0: the first dimension of every input and output is
    /// the batch, of at most this size, and `dims` below leave it out.
    pub max_batch_size: Option<u32>,
    #[serde(default)]
    pub inputs: Vec<TensorSpec>,
    #[serde(default)]
    pub outputs: Vec<TensorSpec>,
    /// Copies of the model that run requests in parallel.
    pub instance_count: Option<u32>,
    pub dynamic_batching: Option<DynamicBatching>,
    #[serde(default)]
    pub version_policy: VersionPolicy,
    /// Backend-specific settings, e.g. `model_file` or thread counts.
    #[serde(default)]
    pub parameters: BTreeMap<String, toml::Value>,
    /// Requests run once per instance after loading, before the version takes traffic.
    #[serde(default)]
    pub warmup: Vec<Warmup>,
    /// Where unversioned requests go (weighted split, shadow copies, sticky key); the
    /// `/traffic` API replaces it at run time.
    pub traffic: Option<crate::TrafficPolicy>,
    /// What the audit log keeps of this model's requests (with `--audit-dir`).
    pub audit: Option<AuditConfig>,
    /// Where the versions come from when not from version directories beside this file:
    /// `s3://bucket/prefix` or `mlflow://host:port/<name>@<alias>` (or `/<name>/<version>`).
    pub source: Option<String>,
    /// `ensemble`: the model is a pipeline of other models (`[[ensemble.step]]`), with no
    /// files or backend of its own.
    pub platform: Option<String>,
    pub ensemble: Option<EnsembleConfig>,
    /// A stateful model: requests carry a sequence id and run in order, with control inputs
    /// and implicit state filled in by the server (instead of `dynamic_batching`).
    pub sequence_batching: Option<SequenceBatching>,
    /// `decoupled = true`: the model answers a request with 0 or more responses (Triton's
    /// model_transaction_policy), over gRPC ModelStreamInfer only.
    pub model_transaction_policy: Option<TransactionPolicy>,
    /// `enabled = true`: successful answers are kept in the server's response cache
    /// (`--cache-size`) and repeated requests answered from it without running the model.
    pub response_cache: Option<ResponseCacheConfig>,
    /// Never unloaded to make room under `--model-memory-limit` / `--max-loaded-models`, and
    /// loaded at start in lazy mode.
    #[serde(default)]
    pub pinned: bool,
}

/// config.toml's `[response_cache]` (Triton's `response_cache { enable }`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseCacheConfig {
    #[serde(default)]
    pub enabled: bool,
}

/// config.toml's `[model_transaction_policy]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionPolicy {
    #[serde(default)]
    pub decoupled: bool,
}

/// config.toml's `[audit]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default)]
    pub payloads: AuditPayloads,
    /// Share of records that keep the payloads, 0 to 1 (the others keep hashes only).
    #[serde(default = "all_of_them")]
    pub sample: f64,
}

fn all_of_them() -> f64 {
    1.0
}

/// What of the request's tensors an audit record keeps besides their hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditPayloads {
    #[default]
    None,
    Inputs,
    All,
}

/// Instances (threads) one model version may ask for.
pub const MAX_INSTANCES: u32 = 256;

/// A relative path made only of normal components.
/// A labels file of a model directory (Triton's `label_filename`, the post-processing step's
/// `labels`): one label per line, line i for class i.
pub fn read_labels(path: &Path) -> Result<Vec<String>, String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_string).collect())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn is_inside(path: &str) -> bool {
    let path = Path::new(path);
    !path.as_os_str().is_empty()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// A warmup request (Triton's model_warmup): every input filled with zeros or random values,
/// or read from a sample file, at `batch_size` rows for batchable models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Warmup {
    #[serde(default = "one")]
    pub batch_size: u32,
    /// Times to run it on each instance.
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub data: WarmupData,
    /// Sample data per input name: a file of raw little-endian elements (BYTES: 4-byte length
    /// prefixes), relative to the model directory, e.g. `warmup/input.bin`.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Sizes for variable (-1) non-batch dimensions per input; 1 when not given.
    #[serde(default)]
    pub dims: BTreeMap<String, Vec<i64>>,
}

fn one() -> u32 {
    1
}

/// Synthetic warmup data for inputs without a sample file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarmupData {
    #[default]
    Zero,
    Random,
}

/// The scheduler's settings (Triton's dynamic_batching and queue policy). Every field has a
/// default, and models without the section get the defaults: batching on for batchable models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicBatching {
    /// Merge queued requests of batchable models (max_batch_size > 0) into one execution.
    pub enabled: bool,
    /// How long a batch may wait for more requests while other instances are busy. The batcher
    /// never waits when no other instance is running: an idle server answers at once.
    pub max_queue_delay_us: u64,
    /// Batch sizes to stop at when reached before max_batch_size.
    pub preferred_batch_sizes: Vec<u32>,
    /// Requests that may wait; more are rejected as unavailable. 0: no limit.
    pub max_queue_size: u32,
    /// Deadline for requests that carry no `timeout` parameter; 0: none.
    pub default_timeout_us: u64,
    /// Priority levels; request parameter `priority` 1 is the most urgent, 0 means the default.
    pub priority_levels: u32,
    pub default_priority_level: u32,
}

impl Default for DynamicBatching {
    fn default() -> Self {
        DynamicBatching {
            enabled: true,
            max_queue_delay_us: 100,
            preferred_batch_sizes: Vec::new(),
            max_queue_size: 1024,
            default_timeout_us: 0,
            priority_levels: 1,
            default_priority_level: 1,
        }
    }
}

/// Which of the version directories are served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionPolicy {
    /// The n highest versions.
    Latest(u32),
    All,
    Specific(Vec<u64>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// The versions to load out of those present, highest first.
    pub fn select(&self, available: &[u64]) -> Vec<u64> {
        let mut sorted = available.to_vec();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted.dedup();
        match self {
            VersionPolicy::Latest(n) => sorted.into_iter().take(*n as usize).collect(),
            VersionPolicy::All => sorted,
            VersionPolicy::Specific(wanted) => {
                sorted.into_iter().filter(|v| wanted.contains(v)).collect()
            }
        }
    }
}

impl ModelConfig {
    /// A model with no versions of its own whose traffic goes to other models (a cross-model
    /// experiment).
    pub fn is_endpoint(&self) -> bool {
        self.traffic
            .as_ref()
            .is_some_and(|t| !t.split.is_empty() && t.split.iter().all(|a| a.model.is_some()))
    }

    /// Whether the model's answers go to the response cache.
    pub fn caches_responses(&self) -> bool {
        self.response_cache.is_some_and(|c| c.enabled)
    }

    /// Whether the model may answer a request with 0 or more responses.
    pub fn is_decoupled(&self) -> bool {
        self.model_transaction_policy.is_some_and(|p| p.decoupled)
    }

    /// Whether the model is a pipeline of other models.
    pub fn is_ensemble(&self) -> bool {
        self.platform.as_deref() == Some(ENSEMBLE_PLATFORM)
    }

    /// Reads `dir/config.toml`; a missing file is an empty config (everything inferred).
    pub fn load_from_dir(dir: &Path) -> Result<ModelConfig, ConfigError> {
        let path = dir.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ModelConfig::default()),
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        Self::parse_toml(&text).map_err(|e| match e {
            ConfigText::Parse(message) => ConfigError::Parse { path, message },
            ConfigText::Invalid(message) => ConfigError::Invalid { path, message },
        })
    }

    /// Parses and validates config.toml text.
    pub fn parse_toml(text: &str) -> Result<ModelConfig, ConfigText> {
        let config: ModelConfig =
            toml::from_str(text).map_err(|e| ConfigText::Parse(e.to_string()))?;
        config.validate().map_err(ConfigText::Invalid)?;
        Ok(config)
    }

    /// Parses and validates the same schema written as JSON (the load API's config override).
    pub fn parse_json(text: &str) -> Result<ModelConfig, ConfigText> {
        let config: ModelConfig =
            serde_json::from_str(text).map_err(|e| ConfigText::Parse(e.to_string()))?;
        config.validate().map_err(ConfigText::Invalid)?;
        Ok(config)
    }

    /// Checks what serde cannot: ranges and consistency between fields.
    pub fn validate(&self) -> Result<(), String> {
        // Paths come from config files and from the load API: they must stay in the model's
        // directory.
        let files = self
            .warmup
            .iter()
            .flat_map(|w| w.files.values().map(|f| ("warmup file", f.clone())))
            .chain(self.parameter("model_file").map(|f| ("model_file", f)))
            .chain(
                self.outputs
                    .iter()
                    .filter_map(|o| o.label_filename.clone())
                    .map(|f| ("label_filename", f)),
            );
        for (what, file) in files {
            if !is_inside(&file) {
                return Err(format!(
                    "{what} '{file}' must be a relative path inside the model directory (no '..')"
                ));
            }
        }
        if let Some(n) = self.instance_count.filter(|n| *n > MAX_INSTANCES) {
            return Err(format!(
                "instance_count {n} is above the limit of {MAX_INSTANCES}"
            ));
        }
        if let Some(w) = self.warmup.iter().find(|w| w.batch_size == 0) {
            return Err(format!(
                "warmup batch_size must be at least 1 (got {})",
                w.batch_size
            ));
        }
        if let VersionPolicy::Latest(0) = self.version_policy {
            return Err("version_policy latest needs at least 1 version".into());
        }
        if self.instance_count == Some(0) {
            return Err("instance_count must be at least 1".into());
        }
        if let Some(traffic) = &self.traffic {
            traffic.arms().map_err(|e| format!("traffic: {e}"))?;
        }
        if let Some(audit) = &self.audit
            && !(0.0..=1.0).contains(&audit.sample)
        {
            return Err(format!(
                "audit.sample {} must be between 0 and 1",
                audit.sample
            ));
        }
        if let Some(b) = &self.dynamic_batching {
            if b.priority_levels == 0 {
                return Err("dynamic_batching.priority_levels must be at least 1".into());
            }
            if !(1..=b.priority_levels).contains(&b.default_priority_level) {
                return Err(format!(
                    "dynamic_batching.default_priority_level must be between 1 and priority_levels ({})",
                    b.priority_levels
                ));
            }
        }
        self.validate_ensemble()?;
        self.validate_sequences()?;
        if self.caches_responses() && (self.is_decoupled() || self.sequence_batching.is_some()) {
            return Err(
                "response_cache is for models whose answer depends on the request alone: not \
                 for sequence (stateful) or decoupled models"
                    .into(),
            );
        }
        if self.is_decoupled() && (self.is_ensemble() || self.sequence_batching.is_some()) {
            return Err(
                "a decoupled model is neither an ensemble nor a sequence model here".into(),
            );
        }
        for (kind, specs) in [("input", &self.inputs), ("output", &self.outputs)] {
            for (i, spec) in specs.iter().enumerate() {
                if specs[..i].iter().any(|s| s.name == spec.name) {
                    return Err(format!("{kind} '{}' is declared twice", spec.name));
                }
                if kind == "output" && spec.format.is_some() {
                    return Err(format!(
                        "output '{}' has a format: formats describe inputs",
                        spec.name
                    ));
                }
                if matches!(spec.format, Some(TensorFormat::Nhwc | TensorFormat::Nchw))
                    && spec.dims.len() != 3
                {
                    return Err(format!(
                        "input '{}' is an image (format {}) but has {} dims; an image has 3 \
                         (channels, height and width, the batch dimension left out)",
                        spec.name,
                        spec.format.map_or("", |f| f.triton_name()),
                        spec.dims.len()
                    ));
                }
                if kind == "input" && spec.label_filename.is_some() {
                    return Err(format!(
                        "input '{}' has a label_filename: labels belong to outputs",
                        spec.name
                    ));
                }
                if let Some(d) = spec.dims.iter().find(|d| **d < -1) {
                    return Err(format!(
                        "{kind} '{}' has dimension {d}; use -1 for variable",
                        spec.name
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_sequences(&self) -> Result<(), String> {
        let Some(sequences) = &self.sequence_batching else {
            return Ok(());
        };
        sequences.validate()?;
        // Triton's scheduling choice is one of the two: a sequence model batches its own way.
        if self.dynamic_batching.is_some() {
            return Err(
                "a model has dynamic_batching or sequence_batching, not both: the sequence \
                 batcher batches across sequences itself ([sequence_batching.oldest])"
                    .into(),
            );
        }
        if !self.warmup.is_empty() {
            return Err(
                "warmup is not supported for sequence models (a warmup request is not part of \
                 a sequence)"
                    .into(),
            );
        }
        if self.is_ensemble() {
            return Err("an ensemble has no sequence_batching: its steps' models have".into());
        }
        let declared = |name: &str| {
            self.inputs
                .iter()
                .chain(&self.outputs)
                .any(|t| t.name == name)
        };
        let filled = sequences
            .control_inputs
            .iter()
            .map(|c| c.name.as_str())
            .chain(
                sequences
                    .states
                    .iter()
                    .flat_map(|s| [&*s.input, &*s.output]),
            );
        for name in filled {
            if declared(name) {
                return Err(format!(
                    "'{name}' is filled in by the sequence batcher; leave it out of inputs and \
                     outputs (clients never send or see it)"
                ));
            }
        }
        Ok(())
    }

    fn validate_ensemble(&self) -> Result<(), String> {
        match (self.platform.as_deref(), &self.ensemble) {
            (None, None) => return Ok(()),
            (Some(ENSEMBLE_PLATFORM), Some(_)) => {}
            (Some(ENSEMBLE_PLATFORM), None) => {
                return Err(
                    "platform \"ensemble\" needs its steps: [[ensemble.step]] with model, \
                     input_map and output_map"
                        .into(),
                );
            }
            (None, Some(_)) => {
                return Err("[ensemble] needs platform = \"ensemble\"".into());
            }
            (Some(other), _) => {
                return Err(format!(
                    "platform '{other}' is not known; the only platform is \"ensemble\" \
                     (model runtimes are chosen with backend = ...)"
                ));
            }
        }
        // An ensemble runs no code of its own: the settings of a runtime would do nothing.
        let refused = [
            ("backend", self.backend.is_some()),
            ("instance_count", self.instance_count.is_some()),
            ("dynamic_batching", self.dynamic_batching.is_some()),
            ("warmup", !self.warmup.is_empty()),
            ("source", self.source.is_some()),
        ];
        if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
            return Err(format!(
                "an ensemble has no {field}: its steps' models have their own"
            ));
        }
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err("an ensemble declares its inputs and outputs (nothing infers them)".into());
        }
        let steps = self
            .ensemble
            .as_ref()
            .map(|e| e.order(&self.inputs, &self.outputs));
        steps.transpose().map(|_| ())
    }

    /// The model file of a version: `[parameters] model_file`, or `default`.
    pub fn model_path(&self, version_dir: &Path, default: &str) -> std::path::PathBuf {
        version_dir.join(
            self.parameter("model_file")
                .unwrap_or_else(|| default.to_string()),
        )
    }

    /// Whether an ONNX backend should claim the version: its model file is an existing `.onnx`.
    pub fn has_onnx_file(&self, version_dir: &Path) -> bool {
        let path = self.model_path(version_dir, "model.onnx");
        path.extension().is_some_and(|e| e == "onnx") && path.is_file()
    }

    /// A backend parameter as a string (TOML strings verbatim, other values as written).
    pub fn parameter(&self, key: &str) -> Option<String> {
        self.parameters.get(key).map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataType;

    #[test]
    fn parses_full_config() {
        let config: ModelConfig = toml::from_str(
            r#"
            backend = "tract"
            max_batch_size = 8
            instance_count = 2
            version_policy = { specific = [1, 3] }
            inputs = [{ name = "x", datatype = "FP32", dims = [4] }]
            outputs = [{ name = "y", datatype = "TYPE_INT64", dims = [-1] }]
            [dynamic_batching]
            max_queue_delay_us = 100
            preferred_batch_sizes = [4, 8]
            [parameters]
            model_file = "net.onnx"
            threads = 2
            "#,
        )
        .unwrap();
        assert_eq!(config.max_batch_size, Some(8));
        assert_eq!(config.inputs[0].datatype, DataType::F32);
        assert_eq!(config.outputs[0].datatype, DataType::I64);
        assert_eq!(config.version_policy, VersionPolicy::Specific(vec![1, 3]));
        assert_eq!(config.parameter("model_file").as_deref(), Some("net.onnx"));
        assert_eq!(config.parameter("threads").as_deref(), Some("2"));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn paths_must_stay_in_the_model_directory() {
        for bad in [
            r#"warmup = [{ files = { x = "/dev/zero" } }]"#,
            r#"warmup = [{ files = { x = "warmup/../../secret" } }]"#,
            r#"parameters = { model_file = "../other/model.onnx" }"#,
        ] {
            let err = ModelConfig::parse_toml(bad).unwrap_err().to_string();
            assert!(err.contains("inside the model directory"), "{bad}: {err}");
        }
        assert!(
            ModelConfig::parse_toml(r#"warmup = [{ files = { x = "warmup/x.bin" } }]"#).is_ok()
        );
        assert!(ModelConfig::parse_toml("instance_count = 100000").is_err());
    }

    #[test]
    fn label_files_stay_in_the_model_directory_and_belong_to_outputs() {
        let output = |file: &str| {
            format!(
                r#"outputs = [{{ name = "p", datatype = "FP32", dims = [3], label_filename = "{file}" }}]"#
            )
        };
        assert!(ModelConfig::parse_toml(&output("labels.txt")).is_ok());
        let err = ModelConfig::parse_toml(&output("../../etc/passwd")).unwrap_err();
        assert!(err.to_string().contains("label_filename"), "{err}");
        let input =
            r#"inputs = [{ name = "x", datatype = "FP32", dims = [3], label_filename = "l.txt" }]"#;
        assert!(ModelConfig::parse_toml(input).is_err());
    }

    #[test]
    fn image_formats_describe_three_dimensional_inputs() {
        let input = |format: &str, dims: &str| {
            format!(
                r#"inputs = [{{ name = "x", datatype = "FP32", dims = {dims}, format = "{format}" }}]"#
            )
        };
        let config = ModelConfig::parse_toml(&input("NCHW", "[3, 224, 224]")).unwrap();
        assert_eq!(config.inputs[0].format, Some(TensorFormat::Nchw));
        assert!(ModelConfig::parse_toml(&input("NONE", "[4]")).is_ok());
        assert!(ModelConfig::parse_toml(&input("NHWC", "[4]")).is_err());
        assert!(ModelConfig::parse_toml(&input("CHW", "[3, 2, 2]")).is_err());
        let output =
            r#"outputs = [{ name = "y", datatype = "FP32", dims = [3, 2, 2], format = "NCHW" }]"#;
        assert!(ModelConfig::parse_toml(output).is_err());
    }

    #[test]
    fn policy_all_is_a_bare_string() {
        let config: ModelConfig = toml::from_str(r#"version_policy = "all""#).unwrap();
        assert_eq!(config.version_policy, VersionPolicy::All);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<ModelConfig>("max_batch = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_batch"), "{err}");
    }

    #[test]
    fn version_policies_select() {
        let available = [1, 3, 2, 10];
        assert_eq!(VersionPolicy::default().select(&available), vec![10]);
        assert_eq!(VersionPolicy::Latest(2).select(&available), vec![10, 3]);
        assert_eq!(VersionPolicy::All.select(&available), vec![10, 3, 2, 1]);
        assert_eq!(
            VersionPolicy::Specific(vec![2, 7]).select(&available),
            vec![2]
        );
    }
}
