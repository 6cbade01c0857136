//! config.toml's `[sequence_batching]` (Triton's `sequence_batching` and `state` blocks): how a
//! stateful model's requests are grouped into sequences, which inputs the server fills in
//! (control inputs) and which tensors it carries from one request of a sequence to the next
//! (implicit state).

use serde::{Deserialize, Serialize};

use crate::DataType;

/// Idle time after which a sequence is released when the config does not say (Triton's).
pub const DEFAULT_SEQUENCE_IDLE_US: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SequenceBatching {
    pub strategy: SequenceStrategy,
    /// A sequence without a request for this long is released (its state dropped, its slot
    /// freed); 0 means the default.
    pub max_sequence_idle_us: u64,
    pub direct: DirectStrategy,
    pub oldest: OldestStrategy,
    /// Inputs the server fills in for each request; hidden from metadata.
    pub control_inputs: Vec<ControlInput>,
    /// Implicit state: each output fed back as the input of the sequence's next request.
    pub states: Vec<SequenceState>,
}

impl Default for SequenceBatching {
    fn default() -> Self {
        SequenceBatching {
            strategy: SequenceStrategy::Direct,
            max_sequence_idle_us: DEFAULT_SEQUENCE_IDLE_US,
            direct: DirectStrategy::default(),
            oldest: OldestStrategy::default(),
            control_inputs: Vec::new(),
            states: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SequenceStrategy {
    /// A slot per sequence: at most max_batch_size x instance_count sequences at once.
    Direct,
    /// Up to `max_candidate_sequences` at once, their requests batched oldest first.
    Oldest,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectStrategy {
    pub max_queue_delay_us: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OldestStrategy {
    pub max_candidate_sequences: u32,
    pub max_queue_delay_us: u64,
    pub preferred_batch_sizes: Vec<u32>,
}

impl Default for OldestStrategy {
    fn default() -> Self {
        OldestStrategy {
            max_candidate_sequences: 1024,
            max_queue_delay_us: 0,
            preferred_batch_sizes: Vec::new(),
        }
    }
}

/// What a control input tells the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ControlKind {
    /// The request starts its sequence.
    Start,
    /// The request carries data (always true: the server never sends filler rows).
    Ready,
    /// The request ends its sequence.
    End,
    /// The sequence's id.
    Corrid,
}

impl ControlKind {
    /// Triton's name for it.
    pub fn triton_name(self) -> &'static str {
        match self {
            ControlKind::Start => "CONTROL_SEQUENCE_START",
            ControlKind::Ready => "CONTROL_SEQUENCE_READY",
            ControlKind::End => "CONTROL_SEQUENCE_END",
            ControlKind::Corrid => "CONTROL_SEQUENCE_CORRID",
        }
    }

    pub fn from_triton(name: &str) -> Option<ControlKind> {
        [
            ControlKind::Start,
            ControlKind::Ready,
            ControlKind::End,
            ControlKind::Corrid,
        ]
        .into_iter()
        .find(|k| k.triton_name() == name || k.triton_name().ends_with(&format!("_{name}")))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlInput {
    /// The model input that receives it.
    pub name: String,
    pub kind: ControlKind,
    pub datatype: DataType,
    /// The false and true values (START, READY, END).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub false_true: Option<[f64; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceState {
    /// The model input that receives the state (zeros on a sequence's first request).
    pub input: String,
    /// The model output whose value becomes the state for the next request.
    pub output: String,
    pub datatype: DataType,
    /// Without the batch dimension.
    pub dims: Vec<i64>,
}

impl SequenceBatching {
    /// Idle time before release, the default standing in for 0.
    pub fn idle_us(&self) -> u64 {
        if self.max_sequence_idle_us == 0 {
            DEFAULT_SEQUENCE_IDLE_US
        } else {
            self.max_sequence_idle_us
        }
    }

    /// Whether `name` is an input the server fills in (control or state).
    pub fn fills_input(&self, name: &str) -> bool {
        self.control_inputs.iter().any(|c| c.name == name)
            || self.states.iter().any(|s| s.input == name)
    }

    /// Whether `name` is an output the server keeps as state.
    pub fn keeps_output(&self, name: &str) -> bool {
        self.states.iter().any(|s| s.output == name)
    }

    pub fn validate(&self) -> Result<(), String> {
        let integer = [
            DataType::U64,
            DataType::I64,
            DataType::U32,
            DataType::I32,
            DataType::Bytes,
        ];
        for (i, control) in self.control_inputs.iter().enumerate() {
            let what = format!("sequence_batching control input '{}'", control.name);
            if self.control_inputs[..i]
                .iter()
                .any(|c| c.name == control.name || c.kind == control.kind)
            {
                return Err(format!(
                    "{what}: each control input and each kind ({:?}) appears once",
                    control.kind
                ));
            }
            match (control.kind, control.false_true) {
                (ControlKind::Corrid, Some(_)) => {
                    return Err(format!("{what}: CORRID carries the id, not false_true"));
                }
                (ControlKind::Corrid, None) if !integer.contains(&control.datatype) => {
                    return Err(format!(
                        "{what}: CORRID is UINT64, INT64, UINT32, INT32 or BYTES (string ids), \
                         not {}",
                        control.datatype
                    ));
                }
                (ControlKind::Corrid, None) => {}
                (_, None) => {
                    return Err(format!(
                        "{what}: {:?} needs false_true = [false value, true value]",
                        control.kind
                    ));
                }
                (_, Some(_))
                    if ![DataType::I32, DataType::F32, DataType::Bool]
                        .contains(&control.datatype) =>
                {
                    return Err(format!(
                        "{what}: a flag is INT32, FP32 or BOOL (as in Triton), not {}",
                        control.datatype
                    ));
                }
                (_, Some(_)) => {}
            }
        }
        for (i, state) in self.states.iter().enumerate() {
            if self.states[..i]
                .iter()
                .any(|s| s.input == state.input || s.output == state.output)
            {
                return Err(format!(
                    "sequence_batching state '{}' -> '{}' names a tensor twice",
                    state.input, state.output
                ));
            }
            if self.control_inputs.iter().any(|c| c.name == state.input) {
                return Err(format!(
                    "sequence_batching state input '{}' is also a control input",
                    state.input
                ));
            }
            if state.dims.iter().any(|d| *d < 1) {
                return Err(format!(
                    "sequence_batching state '{}' has dims {:?}: a state has a fixed shape \
                     (the first request of a sequence gets zeros of it)",
                    state.input, state.dims
                ));
            }
        }
        if self.strategy == SequenceStrategy::Oldest && self.oldest.max_candidate_sequences == 0 {
            return Err(
                "sequence_batching.oldest.max_candidate_sequences must be at least 1".into(),
            );
        }
        Ok(())
    }
}
