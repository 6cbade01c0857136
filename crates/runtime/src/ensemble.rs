//! Ensembles: a model whose requests run as steps on other models. Each step is a request of
//! its own through [`Runtime::infer`] (router, scheduler, batching, statistics, audit and
//! traffic policies of its model), started as soon as the tensors it reads exist, with the
//! ensemble request's deadline and a span of its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use inferd_core::{
    DataType, ENSEMBLE_PLATFORM, ModelConfig, ModelSignature, NamedTensor, Tensor, TensorSpec,
};

use crate::registry::ModelEntry;
use crate::served::{failure_reason, names};
use crate::stats::ExecutionTimes;
use crate::{
    InferRequest, InferResponse, ModelSpec, RequestContext, Runtime, RuntimeError, ServedModel,
    Target,
};

/// The checked steps of one ensemble version.
#[derive(Debug)]
pub(crate) struct Ensemble {
    steps: Vec<Step>,
}

#[derive(Debug)]
struct Step {
    /// `step 2 (model 'classifier')`, for messages and spans.
    label: String,
    target: Target,
    /// The version the config pins, if it does.
    pinned: Option<u64>,
    /// The step model's input <- the ensemble tensor.
    inputs: BTreeMap<String, String>,
    /// The step model's output -> the ensemble tensor.
    outputs: BTreeMap<String, String>,
}

/// Why a step cannot serve now, when one cannot: what readiness reports for the ensemble.
pub(crate) fn unready_step(
    ensemble: &Ensemble,
    models: &BTreeMap<String, ModelEntry>,
) -> Option<String> {
    ensemble.steps.iter().find_map(|step| {
        let serving = models.get(&step.target.model).is_some_and(|entry| {
            entry.endpoint
                || match step.pinned {
                    Some(v) => entry
                        .versions
                        .get(&v)
                        .is_some_and(|s| s.serving().is_some()),
                    None => entry.has_served(),
                }
        });
        (!serving).then(|| format!("{} is not ready", step.label))
    })
}

/// A tensor's element type and full dimensions (batch included; -1: any size).
type Shape = (DataType, Vec<i64>);

fn compatible(a: &[i64], b: &[i64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| *x == -1 || *y == -1 || x == y)
}

impl Runtime {
    /// Checks an ensemble version against the step models loaded now and makes it servable.
    /// Every message names the offending step.
    pub(crate) fn load_ensemble(
        &self,
        name: &str,
        version: u64,
        config: &ModelConfig,
    ) -> Result<ServedModel, String> {
        let steps_config = config
            .ensemble
            .as_ref()
            .ok_or("platform \"ensemble\" needs [[ensemble.step]]")?;
        let order = steps_config.order(&config.inputs, &config.outputs)?;
        let max_batch_size = config.max_batch_size.unwrap_or(0);
        let batched = |t: &TensorSpec| TensorSpec {
            dims: (max_batch_size > 0)
                .then_some(-1)
                .into_iter()
                .chain(t.dims.iter().copied())
                .collect(),
            ..t.clone()
        };
        let signature = ModelSignature {
            inputs: config.inputs.iter().map(batched).collect(),
            outputs: config.outputs.iter().map(batched).collect(),
        };
        let config = ModelConfig {
            max_batch_size: Some(max_batch_size),
            ..config.clone()
        };
        let mut spec = ModelSpec::derive(
            name,
            version,
            (ENSEMBLE_PLATFORM, ENSEMBLE_PLATFORM),
            &config,
            &signature,
        )?;
        // The steps batch (each model's own batcher); the ensemble queues nothing.
        spec.batching.enabled = false;
        spec.instance_count = 0;
        let mut tensors: HashMap<String, Shape> = signature
            .inputs
            .iter()
            .map(|t| (t.name.clone(), (t.datatype, t.dims.clone())))
            .collect();
        let mut steps = Vec::with_capacity(order.len());
        for (i, step) in steps_config.step.iter().enumerate() {
            if step.model == name {
                return Err(format!("{} is the ensemble itself", step.label(i)));
            }
        }
        for &i in &order {
            let step = &steps_config.step[i];
            let label = step.label(i);
            let version = step.version.map(|v| v.to_string());
            let model = self
                .describe(&step.model, version.as_deref())
                .map_err(|e| format!("{label}: {e}"))?
                .spec;
            if max_batch_size > 0 && max_batch_size > model.max_batch_size {
                return Err(format!(
                    "{label} takes batches of at most {} (its max_batch_size) but the \
                     ensemble's max_batch_size is {max_batch_size}",
                    model.max_batch_size
                ));
            }
            for input in &model.inputs {
                if !step.input_map.contains_key(&input.name) {
                    return Err(format!(
                        "{label} leaves its input '{}' unfed (input_map has no entry for it)",
                        input.name
                    ));
                }
            }
            for (input, tensor) in &step.input_map {
                let wanted = model.input(input).ok_or_else(|| {
                    format!(
                        "{label} has no input '{input}'; its inputs are: {}",
                        names(&model.inputs)
                    )
                })?;
                let (datatype, dims) = tensors
                    .get(tensor)
                    .ok_or_else(|| format!("{label} reads '{tensor}', which nothing writes"))?;
                let full = model.full_dims(wanted);
                if *datatype != wanted.datatype {
                    return Err(format!(
                        "{label}: its input '{input}' is {} but '{tensor}' is {datatype}",
                        wanted.datatype
                    ));
                }
                if !compatible(dims, &full) {
                    return Err(format!(
                        "{label}: its input '{input}' has shape {full:?} but '{tensor}' has \
                         {dims:?} (-1: any size)"
                    ));
                }
            }
            for (output, tensor) in &step.output_map {
                let produced = model
                    .outputs
                    .iter()
                    .find(|o| &o.name == output)
                    .ok_or_else(|| {
                        format!(
                            "{label} has no output '{output}'; its outputs are: {}",
                            names(&model.outputs)
                        )
                    })?;
                tensors.insert(
                    tensor.clone(),
                    (produced.datatype, model.full_dims(produced)),
                );
            }
            steps.push(Step {
                label,
                target: Target::new(step.model.clone(), version.as_deref()),
                pinned: step.version,
                inputs: step.input_map.clone(),
                outputs: step.output_map.clone(),
            });
        }
        for output in &signature.outputs {
            let (datatype, dims) = tensors
                .get(&output.name)
                .ok_or_else(|| format!("no step writes the ensemble output '{}'", output.name))?;
            if *datatype != output.datatype || !compatible(dims, &output.dims) {
                return Err(format!(
                    "the ensemble output '{}' is declared {} {:?} but its step makes {datatype} \
                     {dims:?}",
                    output.name, output.datatype, output.dims
                ));
            }
        }
        Ok(ServedModel::ensemble(spec, Ensemble { steps }))
    }

    /// Runs one request of an ensemble version and records it in the version's statistics.
    pub(crate) async fn run_ensemble(
        self: &Arc<Self>,
        load: &ServedModel,
        ensemble: &Ensemble,
        request: InferRequest,
        context: &RequestContext,
    ) -> Result<InferResponse, RuntimeError> {
        let mut record = load.recording();
        let started = Instant::now();
        let result = self.run_steps(load, ensemble, request, context).await;
        match &result {
            Ok((_, rows)) => record.success(
                *rows,
                &ExecutionTimes {
                    compute_infer: started.elapsed(),
                    ..ExecutionTimes::default()
                },
            ),
            Err(e) => record.failure(failure_reason(e)),
        }
        result.map(|(response, _)| response)
    }

    async fn run_steps(
        self: &Arc<Self>,
        load: &ServedModel,
        ensemble: &Ensemble,
        request: InferRequest,
        context: &RequestContext,
    ) -> Result<(InferResponse, usize), RuntimeError> {
        let spec = load.spec();
        let (inputs, wanted, parameters) = load.checked(request)?;
        let rows = load.rows(&inputs);
        let deadline = load.deadline(context, &parameters)?;
        let mut tensors: HashMap<String, Tensor> = spec
            .inputs
            .iter()
            .map(|t| t.name.clone())
            .zip(inputs)
            .collect();
        let mut waiting: Vec<usize> = (0..ensemble.steps.len()).collect();
        let mut running = FuturesUnordered::new();
        loop {
            let (ready, later): (Vec<usize>, Vec<usize>) = waiting.iter().partition(|&&i| {
                ensemble.steps[i]
                    .inputs
                    .values()
                    .all(|t| tensors.contains_key(t))
            });
            waiting = later;
            for i in ready {
                let step = &ensemble.steps[i];
                let request = InferRequest {
                    parameters: parameters.clone(),
                    inputs: step
                        .inputs
                        .iter()
                        .map(|(input, tensor)| NamedTensor {
                            name: input.clone(),
                            tensor: tensors[tensor].clone(),
                        })
                        .collect(),
                    outputs: Some(step.outputs.keys().cloned().collect()),
                    classification: Default::default(),
                };
                let mut step_context = context.clone();
                step_context.id = format!("{}/{}", context.id, i + 1);
                step_context.client_id = false;
                // A step's answer feeds the next step: nothing of it streams to the client.
                step_context.responses = None;
                step_context.deadline = deadline;
                // The ensemble's authorization covers the steps its config names.
                step_context.grant = None;
                step_context.trace = context.trace.as_ref().map(|parent| {
                    tracing::trace_span!(
                        target: inferd_core::TRACE_TARGET,
                        parent: parent,
                        "ensemble_step",
                        otel.name = %step.label,
                        step = i + 1,
                        model = %step.target.model,
                    )
                });
                running.push(async move {
                    let answer = Box::pin(self.infer(&step.target, request, &step_context)).await;
                    (i, answer)
                });
            }
            let Some((i, answer)) = running.next().await else {
                break;
            };
            let step = &ensemble.steps[i];
            let response = answer.map_err(|e| RuntimeError::Step {
                ensemble: spec.name.clone(),
                step: step.label.clone(),
                source: Box::new(e),
            })?;
            for NamedTensor { name, tensor } in response.outputs {
                if let Some(to) = step.outputs.get(&name) {
                    tensors.insert(to.clone(), tensor);
                }
            }
        }
        let mut outputs = Vec::with_capacity(wanted.len());
        for ix in wanted {
            let declared = &spec.outputs[ix];
            let tensor = tensors
                .remove(&declared.name)
                .ok_or_else(|| RuntimeError::Inference {
                    model: spec.name.clone(),
                    version: spec.version,
                    message: format!("no step produced the output '{}'", declared.name),
                })?;
            if tensor.datatype() != declared.datatype {
                return Err(RuntimeError::Inference {
                    model: spec.name.clone(),
                    version: spec.version,
                    message: format!(
                        "the output '{}' came back as {} but the ensemble declares {} (a step \
                         model changed since the ensemble loaded; reload it)",
                        declared.name,
                        tensor.datatype(),
                        declared.datatype
                    ),
                });
            }
            outputs.push(NamedTensor {
                name: declared.name.clone(),
                tensor,
            });
        }
        let response = InferResponse {
            route: String::new(),
            model_name: spec.name.clone(),
            model_version: spec.version,
            outputs,
            decoupled: false,
            cached: false,
        };
        Ok((response, rows))
    }
}
