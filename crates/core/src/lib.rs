//! The stable centre of inferd: tensors, datatypes, model configuration and the backend boundary.
//! No I/O beyond reading a config file, no async: every other crate depends on this one.

mod backend;
mod config;
mod datatype;
mod ensemble;
mod error;
mod instances;
mod sequence;
mod tensor;
mod traffic;

pub use backend::{
    Backend, LoadedModel, ModelSignature, Reshape, TensorFormat, TensorSpec, resolve_dims,
};
pub use config::{
    AuditConfig, AuditPayloads, CONFIG_FILE, DEFAULT_MAX_BATCH_SIZE, DynamicBatching,
    MAX_INSTANCES, ModelConfig, ResponseCacheConfig, TransactionPolicy, VersionPolicy, Warmup,
    WarmupData, read_labels,
};
pub use datatype::DataType;
pub use ensemble::{ENSEMBLE_PLATFORM, EnsembleConfig, EnsembleStep};

/// `tracing` target of the spans exported as traces; only requests that are sampled get them.
pub const TRACE_TARGET: &str = "inferd::trace";
pub use error::{BackendError, ConfigError, ConfigText};
pub use instances::Instances;
pub use sequence::{
    ControlInput, ControlKind, DEFAULT_SEQUENCE_IDLE_US, DirectStrategy, OldestStrategy,
    SequenceBatching, SequenceState, SequenceStrategy,
};
pub use tensor::{
    Element, NamedTensor, Tensor, TensorData, check_binary_len, dims_from_wire, element_count,
};
pub use traffic::{ArmTarget, ShadowArm, SplitArm, TrafficPolicy};
