//! A loaded model version that serves requests: validation against its spec, then execution.

use std::sync::Arc;

use inferd_core::{LoadedModel, NamedTensor, Tensor, TensorSpec};
use tokio::sync::Semaphore;

use crate::{InferRequest, InferResponse, ModelSpec, RuntimeError};

pub struct ServedModel {
    spec: ModelSpec,
    model: Arc<dyn LoadedModel>,
    /// One permit per instance: at most `instance_count` executions at once.
    instances: Semaphore,
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl ServedModel {
    pub fn new(spec: ModelSpec, model: Arc<dyn LoadedModel>) -> ServedModel {
        let instances = Semaphore::new(spec.instance_count.max(1) as usize);
        ServedModel {
            spec,
            model,
            instances,
        }
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub async fn infer(&self, request: InferRequest) -> Result<InferResponse, RuntimeError> {
        let InferRequest {
            id,
            inputs,
            outputs,
            ..
        } = request;
        let wanted = self.requested_outputs(outputs)?;
        let inputs = self.ordered_inputs(inputs)?;
        let fail = |message: String| RuntimeError::Inference {
            model: self.spec.name.clone(),
            version: self.spec.version,
            message,
        };
        let _instance = self
            .instances
            .acquire()
            .await
            .map_err(|_| RuntimeError::NotReady {
                model: self.spec.name.clone(),
                reason: "the model is being unloaded".into(),
            })?;
        let model = Arc::clone(&self.model);
        let outputs = tokio::task::spawn_blocking(move || model.infer(inputs))
            .await
            .map_err(|e| fail(format!("the model crashed: {e}")))?
            .map_err(|e| fail(e.to_string()))?;
        if outputs.len() != self.spec.outputs.len() {
            return Err(fail(format!(
                "the backend returned {} outputs, the model declares {}",
                outputs.len(),
                self.spec.outputs.len()
            )));
        }
        let mut named: Vec<Option<Tensor>> = outputs.into_iter().map(Some).collect();
        let outputs = wanted
            .into_iter()
            .filter_map(|ix| {
                let tensor = named[ix].take()?;
                Some(NamedTensor {
                    name: self.spec.outputs[ix].name.clone(),
                    tensor,
                })
            })
            .collect();
        Ok(InferResponse {
            id,
            model_name: self.spec.name.clone(),
            model_version: self.spec.version,
            outputs,
        })
    }

    /// Indices into the spec's outputs, in the order the client asked for them.
    fn requested_outputs(
        &self,
        requested: Option<Vec<String>>,
    ) -> Result<Vec<usize>, RuntimeError> {
        let Some(requested) = requested else {
            return Ok((0..self.spec.outputs.len()).collect());
        };
        if let Some(name) = requested
            .iter()
            .enumerate()
            .find_map(|(i, n)| requested[..i].contains(n).then_some(n))
        {
            return Err(RuntimeError::InvalidInput(format!(
                "output '{name}' is requested more than once"
            )));
        }
        requested
            .iter()
            .map(|name| {
                self.spec
                    .outputs
                    .iter()
                    .position(|o| &o.name == name)
                    .ok_or_else(|| {
                        RuntimeError::InvalidInput(format!(
                            "unknown output '{name}' requested; model '{}' has outputs: {}",
                            self.spec.name,
                            names(&self.spec.outputs)
                        ))
                    })
            })
            .collect()
    }

    /// Checks every input against the spec and returns them in model order.
    fn ordered_inputs(&self, inputs: Vec<NamedTensor>) -> Result<Vec<Tensor>, RuntimeError> {
        let model = &self.spec.name;
        let invalid = |m: String| Err(RuntimeError::InvalidInput(m));
        let mut slots: Vec<Option<Tensor>> = vec![None; self.spec.inputs.len()];
        let mut batch: Option<(usize, String)> = None;
        for NamedTensor { name, tensor } in inputs {
            let Some(ix) = self.spec.inputs.iter().position(|i| i.name == name) else {
                return invalid(format!(
                    "unknown input '{name}' for model '{model}'; its inputs are: {}",
                    names(&self.spec.inputs)
                ));
            };
            if slots[ix].is_some() {
                return invalid(format!("input '{name}' is given more than once"));
            }
            let spec = &self.spec.inputs[ix];
            if tensor.datatype() != spec.datatype {
                return invalid(format!(
                    "input '{name}' has datatype {} but model '{model}' expects {}",
                    tensor.datatype(),
                    spec.datatype
                ));
            }
            self.check_shape(spec, tensor.shape())?;
            if self.spec.max_batch_size > 0 {
                let n = tensor.shape()[0];
                match &batch {
                    Some((m, other)) if *m != n => {
                        return invalid(format!(
                            "input '{name}' has batch size {n} but input '{other}' has {m}"
                        ));
                    }
                    _ => batch = Some((n, name.clone())),
                }
            }
            slots[ix] = Some(tensor);
        }
        slots
            .into_iter()
            .zip(&self.spec.inputs)
            .map(|(slot, spec)| {
                slot.ok_or_else(|| {
                    RuntimeError::InvalidInput(format!(
                        "missing input '{}' ({} {:?}) for model '{model}'",
                        spec.name,
                        spec.datatype,
                        self.spec.full_dims(spec)
                    ))
                })
            })
            .collect()
    }

    fn check_shape(&self, spec: &TensorSpec, shape: &[usize]) -> Result<(), RuntimeError> {
        let expected = self.spec.full_dims(spec);
        let mismatch = || {
            RuntimeError::InvalidInput(format!(
                "input '{}' has shape {shape:?} but model '{}' expects {expected:?} (-1: any size)",
                spec.name, self.spec.name
            ))
        };
        if shape.len() != expected.len() {
            return Err(mismatch());
        }
        let dims = if self.spec.max_batch_size > 0 {
            let n = shape[0];
            if n == 0 || n > self.spec.max_batch_size as usize {
                return Err(RuntimeError::InvalidInput(format!(
                    "input '{}' has batch size {n}; model '{}' takes 1 to {} (max_batch_size)",
                    spec.name, self.spec.name, self.spec.max_batch_size
                )));
            }
            &shape[1..]
        } else {
            shape
        };
        if dims
            .iter()
            .zip(&spec.dims)
            .any(|(got, want)| *want != -1 && *got as i64 != *want)
        {
            return Err(mismatch());
        }
        Ok(())
    }
}

fn names(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
