//! A sequence model's `sequence_batching` in Triton's configuration shape (JSON and protobuf).

use inferd_core::{
    ControlInput as ControlConfig, DataType, SequenceBatching as Config, SequenceStrategy,
};
use serde::Serialize;

use super::config::{data_type, type_name};
use crate::pb;
use pb::model_sequence_batching as seq;

#[derive(Debug, Clone, Serialize)]
pub struct SequenceBatching {
    pub max_sequence_idle_microseconds: u64,
    pub control_input: Vec<ControlInput>,
    pub state: Vec<State>,
    #[serde(flatten)]
    pub strategy: Strategy,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Direct {
        max_queue_delay_microseconds: u64,
        minimum_slot_utilization: f32,
    },
    Oldest {
        max_candidate_sequences: i32,
        preferred_batch_size: Vec<i32>,
        max_queue_delay_microseconds: u64,
        preserve_ordering: bool,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct ControlInput {
    pub name: String,
    pub control: Vec<Control>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Control {
    pub kind: &'static str,
    pub int32_false_true: Vec<i32>,
    pub fp32_false_true: Vec<f32>,
    pub bool_false_true: Vec<bool>,
    /// CORRID's datatype; flags say theirs by which false_true list is filled.
    pub data_type: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct State {
    pub input_name: String,
    pub output_name: String,
    #[serde(serialize_with = "type_name")]
    pub data_type: DataType,
    pub dims: Vec<i64>,
}

impl SequenceBatching {
    pub fn of(config: &Config) -> SequenceBatching {
        let strategy = match config.strategy {
            SequenceStrategy::Direct => Strategy::Direct {
                max_queue_delay_microseconds: config.direct.max_queue_delay_us,
                minimum_slot_utilization: 0.0,
            },
            SequenceStrategy::Oldest => Strategy::Oldest {
                max_candidate_sequences: config.oldest.max_candidate_sequences as i32,
                preferred_batch_size: config
                    .oldest
                    .preferred_batch_sizes
                    .iter()
                    .map(|s| *s as i32)
                    .collect(),
                max_queue_delay_microseconds: config.oldest.max_queue_delay_us,
                // Requests of one sequence are answered in order; others need not be.
                preserve_ordering: false,
            },
        };
        SequenceBatching {
            max_sequence_idle_microseconds: config.idle_us(),
            control_input: config.control_inputs.iter().map(control).collect(),
            state: config
                .states
                .iter()
                .map(|s| State {
                    input_name: s.input.clone(),
                    output_name: s.output.clone(),
                    data_type: s.datatype,
                    dims: s.dims.clone(),
                })
                .collect(),
            strategy,
        }
    }
}

fn control(c: &ControlConfig) -> ControlInput {
    let values = c.false_true.unwrap_or_default();
    let (mut int32, mut fp32, mut boolean) = (Vec::new(), Vec::new(), Vec::new());
    match (c.false_true.is_some(), c.datatype) {
        (false, _) => {}
        (true, DataType::F32) => fp32 = values.iter().map(|v| *v as f32).collect(),
        (true, DataType::Bool) => boolean = values.iter().map(|v| *v != 0.0).collect(),
        (true, _) => int32 = values.iter().map(|v| *v as i32).collect(),
    }
    let data_type = if c.false_true.is_none() {
        c.datatype.config_name()
    } else {
        "TYPE_INVALID"
    };
    ControlInput {
        name: c.name.clone(),
        control: vec![Control {
            kind: c.kind.triton_name(),
            int32_false_true: int32,
            fp32_false_true: fp32,
            bool_false_true: boolean,
            data_type,
        }],
    }
}

impl From<SequenceBatching> for pb::ModelSequenceBatching {
    fn from(s: SequenceBatching) -> Self {
        let SequenceBatching {
            max_sequence_idle_microseconds,
            control_input,
            state,
            strategy,
        } = s;
        let strategy_choice = match strategy {
            Strategy::Direct {
                max_queue_delay_microseconds,
                minimum_slot_utilization,
            } => seq::StrategyChoice::Direct(seq::StrategyDirect {
                max_queue_delay_microseconds,
                minimum_slot_utilization,
            }),
            Strategy::Oldest {
                max_candidate_sequences,
                preferred_batch_size,
                max_queue_delay_microseconds,
                preserve_ordering,
            } => seq::StrategyChoice::Oldest(seq::StrategyOldest {
                max_candidate_sequences,
                preferred_batch_size,
                max_queue_delay_microseconds,
                preserve_ordering,
            }),
        };
        let control_input = control_input
            .into_iter()
            .map(|ControlInput { name, control }| seq::ControlInput {
                name,
                control: control
                    .into_iter()
                    .map(|c| {
                        let Control {
                            kind,
                            int32_false_true,
                            fp32_false_true,
                            bool_false_true,
                            data_type: dt,
                        } = c;
                        seq::Control {
                            kind: seq::control::Kind::from_str_name(kind).unwrap_or_default()
                                as i32,
                            int32_false_true,
                            fp32_false_true,
                            bool_false_true,
                            data_type: pb::DataType::from_str_name(dt).unwrap_or_default() as i32,
                        }
                    })
                    .collect(),
            })
            .collect();
        let state = state
            .into_iter()
            .map(|s| {
                let State {
                    input_name,
                    output_name,
                    data_type: dt,
                    dims,
                } = s;
                seq::State {
                    input_name,
                    output_name,
                    data_type: data_type(dt),
                    dims,
                }
            })
            .collect();
        pb::ModelSequenceBatching {
            max_sequence_idle_microseconds,
            control_input,
            state,
            strategy_choice: Some(strategy_choice),
        }
    }
}
