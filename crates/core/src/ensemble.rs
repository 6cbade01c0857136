//! config.toml's `[[ensemble.step]]`: a pipeline of models over named tensors (Triton's
//! `ensemble_scheduling`). What can be checked from the config alone is checked here: every
//! tensor has one producer, every step's inputs are produced, no cycles. The runtime checks the
//! rest against the step models it finds loaded.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::TensorSpec;

/// The platform name that makes a model an ensemble (Triton's).
pub const ENSEMBLE_PLATFORM: &str = "ensemble";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleConfig {
    #[serde(default)]
    pub step: Vec<EnsembleStep>,
}

/// One step: a model run on ensemble tensors, whose outputs become ensemble tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleStep {
    pub model: String,
    /// A version of the step model; absent: the router decides, as for any unversioned request.
    pub version: Option<u64>,
    /// The step model's input <- the ensemble tensor that feeds it.
    pub input_map: BTreeMap<String, String>,
    /// The step model's output -> the ensemble tensor it becomes. Outputs not listed are
    /// not computed for the ensemble.
    pub output_map: BTreeMap<String, String>,
}

impl EnsembleStep {
    /// How messages name the step: its position (1-based) and model.
    pub fn label(&self, index: usize) -> String {
        format!("step {} (model '{}')", index + 1, self.model)
    }
}

impl EnsembleConfig {
    /// The steps in an order where every step comes after those it needs; an error names the
    /// step that breaks the graph.
    pub fn order(
        &self,
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
    ) -> Result<Vec<usize>, String> {
        if self.step.is_empty() {
            return Err("an ensemble needs at least one [[ensemble.step]]".into());
        }
        let given: BTreeSet<&str> = inputs.iter().map(|t| t.name.as_str()).collect();
        let mut producer: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, step) in self.step.iter().enumerate() {
            if step.model.is_empty() {
                return Err(format!("step {} names no model", i + 1));
            }
            if step.input_map.is_empty() {
                return Err(format!("{} has an empty input_map", step.label(i)));
            }
            if step.output_map.is_empty() {
                return Err(format!("{} has an empty output_map", step.label(i)));
            }
            let mut seen = BTreeSet::new();
            for tensor in step.output_map.values() {
                if !seen.insert(tensor.as_str()) {
                    return Err(format!(
                        "{} maps two outputs to the tensor '{tensor}'",
                        step.label(i)
                    ));
                }
                if given.contains(tensor.as_str()) {
                    return Err(format!(
                        "{} writes '{tensor}', which is an input of the ensemble",
                        step.label(i)
                    ));
                }
                if let Some(other) = producer.insert(tensor, i) {
                    return Err(format!(
                        "the tensor '{tensor}' is written by both {} and {}",
                        self.step[other].label(other),
                        step.label(i)
                    ));
                }
            }
        }
        for (i, step) in self.step.iter().enumerate() {
            for (input, tensor) in &step.input_map {
                if !given.contains(tensor.as_str()) && !producer.contains_key(tensor.as_str()) {
                    return Err(format!(
                        "{} feeds its input '{input}' from '{tensor}', which is neither an \
                         ensemble input nor any step's output",
                        step.label(i)
                    ));
                }
            }
        }
        for output in outputs {
            if !producer.contains_key(output.name.as_str()) {
                return Err(format!(
                    "the ensemble output '{}' is not written by any step's output_map",
                    output.name
                ));
            }
        }
        // Kahn's algorithm: a step is ready once every tensor it reads exists.
        let mut ready: BTreeSet<&str> = given.clone();
        let mut order = Vec::with_capacity(self.step.len());
        let mut left: Vec<usize> = (0..self.step.len()).collect();
        while !left.is_empty() {
            let (now, later): (Vec<usize>, Vec<usize>) = left.iter().partition(|&&i| {
                self.step[i]
                    .input_map
                    .values()
                    .all(|t| ready.contains(t.as_str()))
            });
            if now.is_empty() {
                let i = later[0];
                return Err(format!(
                    "{} is part of a cycle: its inputs depend on its own outputs",
                    self.step[i].label(i)
                ));
            }
            for &i in &now {
                ready.extend(self.step[i].output_map.values().map(String::as_str));
            }
            order.extend(now);
            left = later;
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataType;

    fn spec(name: &str) -> TensorSpec {
        TensorSpec::new(name, DataType::F32, vec![4])
    }

    fn step(model: &str, inputs: &[(&str, &str)], outputs: &[(&str, &str)]) -> EnsembleStep {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        EnsembleStep {
            model: model.into(),
            version: None,
            input_map: map(inputs),
            output_map: map(outputs),
        }
    }

    #[test]
    fn orders_steps_by_their_inputs() {
        let config = EnsembleConfig {
            step: vec![
                step("b", &[("x", "mid")], &[("y", "OUT")]),
                step("a", &[("x", "IN")], &[("y", "mid")]),
            ],
        };
        assert_eq!(config.order(&[spec("IN")], &[spec("OUT")]), Ok(vec![1, 0]));
    }

    #[test]
    fn refuses_cycles_naming_the_step() {
        let config = EnsembleConfig {
            step: vec![
                step("a", &[("x", "IN"), ("z", "back")], &[("y", "mid")]),
                step("b", &[("x", "mid")], &[("y", "back"), ("w", "OUT")]),
            ],
        };
        let err = config.order(&[spec("IN")], &[spec("OUT")]).unwrap_err();
        assert!(
            err.contains("step 1 (model 'a') is part of a cycle"),
            "{err}"
        );
    }

    #[test]
    fn refuses_unfed_inputs_and_unwritten_outputs() {
        let config = EnsembleConfig {
            step: vec![step("a", &[("x", "nowhere")], &[("y", "OUT")])],
        };
        let err = config.order(&[spec("IN")], &[spec("OUT")]).unwrap_err();
        assert!(err.contains("'nowhere'"), "{err}");
        let config = EnsembleConfig {
            step: vec![step("a", &[("x", "IN")], &[("y", "other")])],
        };
        let err = config.order(&[spec("IN")], &[spec("OUT")]).unwrap_err();
        assert!(err.contains("ensemble output 'OUT'"), "{err}");
    }

    #[test]
    fn refuses_two_writers_of_a_tensor() {
        let config = EnsembleConfig {
            step: vec![
                step("a", &[("x", "IN")], &[("y", "OUT")]),
                step("b", &[("x", "IN")], &[("y", "OUT")]),
            ],
        };
        let err = config.order(&[spec("IN")], &[spec("OUT")]).unwrap_err();
        assert!(err.contains("written by both"), "{err}");
    }
}
