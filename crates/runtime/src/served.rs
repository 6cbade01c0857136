//! A loaded model version that serves requests: validation against its spec, then its
//! scheduler (queue, batcher, instance threads).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use inferd_core::{LoadedModel, NamedTensor, SequenceStrategy, Tensor, TensorSpec};

use crate::ensemble::Ensemble;
use crate::memory::{ReleaseOnDrop, Trimmer};
use crate::scheduler::{BatchOps, Policy, QueueError, Scheduler};
use crate::sequence::{Flags, Sequences};
use crate::stats::{ExecutionTimes, FailureReason, ModelStats, StatsSnapshot};
use crate::warmup;
use crate::{InferRequest, InferResponse, ModelSpec, Parameters, RequestContext, RuntimeError};

/// Shadow copies that may wait for a version's shadow thread; more are dropped.
const SHADOW_QUEUE: usize = 16;

pub(crate) struct ServedModel {
    spec: Arc<ModelSpec>,
    engine: Engine,
    stats: Arc<ModelStats>,
    /// Fields drop in order: this runs after the scheduler freed the model.
    /// Versions that ran a model ask for a trim of the memory it leaves (ensembles hold none).
    _release: Option<ReleaseOnDrop>,
}

/// What runs the version's requests.
enum Engine {
    /// A backend's model behind its scheduler.
    Model {
        scheduler: Scheduler,
        /// For a sequence model: its live sequences and their state.
        sequences: Option<Box<Sequences>>,
        /// Shadow copies' own queue and idle-priority thread, started with the first copy.
        shadow: std::sync::OnceLock<Result<Scheduler, String>>,
        model: Arc<dyn LoadedModel>,
    },
    /// Steps run by the runtime, each through its own model's router and scheduler.
    Ensemble(Arc<Ensemble>),
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl ServedModel {
    /// Starts the model's scheduler (its instance threads) and returns once each instance ran
    /// the config's warmup requests (sample files are found under `model_dir`).
    pub fn new(
        spec: ModelSpec,
        model: Arc<dyn LoadedModel>,
        model_dir: &Path,
        trimmer: Trimmer,
    ) -> Result<ServedModel, String> {
        Self::with_ops(spec, model, model_dir, BatchOps::default(), trimmer)
    }

    pub(crate) fn with_ops(
        spec: ModelSpec,
        model: Arc<dyn LoadedModel>,
        model_dir: &Path,
        ops: BatchOps,
        trimmer: Trimmer,
    ) -> Result<ServedModel, String> {
        let warmup = warmup::runs(&spec, model_dir)?;
        let b = &spec.batching;
        let mut policy = Policy {
            inline: true,
            background: false,
            batching: spec.batches(),
            max_batch_size: spec.max_batch_size as usize,
            max_queue_delay: Duration::from_micros(b.max_queue_delay_us),
            preferred_batch_sizes: b
                .preferred_batch_sizes
                .iter()
                .map(|s| *s as usize)
                .collect(),
            max_queue_size: b.max_queue_size as usize,
            instances: spec.instance_count.max(1) as usize,
        };
        let sequences = spec.sequence.as_ref().map(|layout| {
            // Requests of different sequences batch in the scheduler, by the strategy's knobs.
            let c = &layout.config;
            let (delay, preferred) = match c.strategy {
                SequenceStrategy::Direct => (c.direct.max_queue_delay_us, Vec::new()),
                SequenceStrategy::Oldest => (
                    c.oldest.max_queue_delay_us,
                    c.oldest.preferred_batch_sizes.clone(),
                ),
            };
            policy.max_queue_delay = Duration::from_micros(delay);
            policy.preferred_batch_sizes = preferred.iter().map(|s| *s as usize).collect();
            let slots = Sequences::capacity(c, spec.max_batch_size, spec.instance_count);
            Box::new(Sequences::new(
                Arc::clone(layout),
                &spec.name,
                spec.version,
                slots,
            ))
        });
        let stats = Arc::new(ModelStats::default());
        let scheduler = Scheduler::start(
            &spec.name,
            Arc::clone(&model),
            policy,
            &warmup,
            Arc::clone(&stats),
            ops,
        )?;
        Ok(ServedModel {
            spec: Arc::new(spec),
            engine: Engine::Model {
                scheduler,
                sequences,
                shadow: std::sync::OnceLock::new(),
                model,
            },
            stats,
            _release: Some(ReleaseOnDrop(trimmer)),
        })
    }

    /// An ensemble version: nothing of its own runs, so nothing starts.
    pub fn ensemble(spec: ModelSpec, ensemble: Ensemble) -> ServedModel {
        ServedModel {
            spec: Arc::new(spec),
            engine: Engine::Ensemble(Arc::new(ensemble)),
            stats: Arc::new(ModelStats::default()),
            _release: None,
        }
    }

    pub fn spec(&self) -> &Arc<ModelSpec> {
        &self.spec
    }

    /// The steps, when this version is an ensemble (the runtime runs them).
    pub fn steps(&self) -> Option<&Arc<Ensemble>> {
        match &self.engine {
            Engine::Ensemble(e) => Some(e),
            Engine::Model { .. } => None,
        }
    }

    fn scheduler(&self) -> Result<&Scheduler, RuntimeError> {
        match &self.engine {
            Engine::Model { scheduler, .. } => Ok(scheduler),
            Engine::Ensemble(_) => Err(self.not_a_model()),
        }
    }

    fn not_a_model(&self) -> RuntimeError {
        RuntimeError::Inference {
            model: self.spec.name.clone(),
            version: self.spec.version,
            message: "an ensemble runs through its steps, not a scheduler".into(),
        }
    }

    /// Executions so far by batch size (rows), as the dynamic batcher formed them.
    #[cfg(test)]
    pub fn batch_sizes(&self) -> std::collections::BTreeMap<usize, u64> {
        self.stats
            .snapshot()
            .batches
            .iter()
            .map(|b| (b.batch_size as usize, b.compute_infer.count))
            .collect()
    }

    /// This version's statistics now, with the requests waiting in its queue.
    pub fn stats(&self) -> StatsSnapshot {
        let scheduler = self.scheduler().ok();
        StatsSnapshot {
            pending: scheduler.map_or(0, |s| s.pending()) as u64,
            sequences: self.sequences().map(Sequences::counts),
            instances: scheduler.map_or(0, |_| self.spec.instance_count.max(1)),
            utilization: scheduler.map_or(0.0, Scheduler::utilization),
            ..self.stats.snapshot()
        }
    }

    /// Requests in this version now, queued or running.
    pub(crate) fn inflight(&self) -> u64 {
        self.stats
            .inflight
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn sequences(&self) -> Option<&Sequences> {
        match &self.engine {
            Engine::Model { sequences, .. } => sequences.as_deref(),
            Engine::Ensemble(_) => None,
        }
    }

    /// Priority level chosen by the front door, else the `priority` parameter: 0 or absent is
    /// the default level.
    fn priority(&self, chosen: Option<u32>, parameters: &Parameters) -> Result<u32, RuntimeError> {
        let b = &self.spec.batching;
        let level = match chosen {
            Some(level) => Some(Some(u64::from(level))),
            None => parameters.get("priority").map(|p| p.as_u64()),
        };
        match level {
            None | Some(Some(0)) => Ok(b.default_priority_level),
            Some(Some(p)) if p <= u64::from(b.priority_levels) => Ok(p as u32),
            Some(Some(p)) => Err(RuntimeError::InvalidInput(format!(
                "priority {p} is beyond the {} priority levels of model '{}' (1 is the most urgent)",
                b.priority_levels, self.spec.name
            ))),
            Some(None) => Err(RuntimeError::InvalidInput(
                "parameter 'priority' must be an unsigned integer".into(),
            )),
        }
    }

    /// Deadline from the `timeout` parameter (microseconds) or the model's default timeout,
    /// counted from when the request was received; the front door's deadline if earlier.
    pub(crate) fn deadline(
        &self,
        context: &RequestContext,
        parameters: &Parameters,
    ) -> Result<Option<Instant>, RuntimeError> {
        let us = match parameters.get("timeout").map(|p| p.as_u64()) {
            None => self.spec.batching.default_timeout_us,
            Some(Some(us)) => us,
            Some(None) => {
                return Err(RuntimeError::InvalidInput(
                    "parameter 'timeout' must be microseconds as an unsigned integer".into(),
                ));
            }
        };
        let own = (us > 0).then(|| context.received + Duration::from_micros(us));
        Ok(match (own, context.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Runs one request and records it in the statistics: success with its durations, or
    /// failure with a reason (CANCELED when the caller stops waiting).
    pub async fn infer(
        &self,
        request: InferRequest,
        context: &RequestContext,
    ) -> Result<InferResponse, RuntimeError> {
        self.infer_on(self.scheduler()?, None, request, context)
            .await
    }

    /// Whether a shadow copy would find room in the shadow queue now.
    pub fn shadow_has_room(&self) -> bool {
        match &self.engine {
            Engine::Model { shadow, .. } => match shadow.get() {
                Some(Ok(scheduler)) => scheduler.pending() < SHADOW_QUEUE,
                _ => true,
            },
            Engine::Ensemble(_) => false,
        }
    }

    /// Runs a shadow copy on the shadow queue (small, served at idle priority): a full queue
    /// answers QueueFull at once.
    pub async fn infer_shadow(
        &self,
        request: InferRequest,
        context: &RequestContext,
    ) -> Result<InferResponse, RuntimeError> {
        let Engine::Model { shadow, model, .. } = &self.engine else {
            return Err(self.not_a_model());
        };
        let scheduler = shadow
            .get_or_init(|| {
                let policy = Policy {
                    inline: false,
                    background: true,
                    batching: self.spec.batches(),
                    max_batch_size: self.spec.max_batch_size as usize,
                    max_queue_delay: Duration::from_micros(self.spec.batching.max_queue_delay_us),
                    preferred_batch_sizes: Vec::new(),
                    max_queue_size: SHADOW_QUEUE,
                    instances: 1,
                };
                Scheduler::start(
                    &format!("{}-shadow", self.spec.name),
                    Arc::clone(model),
                    policy,
                    &[],
                    Arc::clone(&self.stats),
                    BatchOps::default(),
                )
            })
            .as_ref()
            .map_err(|e| RuntimeError::Inference {
                model: self.spec.name.clone(),
                version: self.spec.version,
                message: e.clone(),
            })?;
        let lowest = self.spec.batching.priority_levels;
        self.infer_on(scheduler, Some(lowest), request, context)
            .await
    }

    async fn infer_on(
        &self,
        scheduler: &Scheduler,
        priority: Option<u32>,
        request: InferRequest,
        context: &RequestContext,
    ) -> Result<InferResponse, RuntimeError> {
        let mut record = Recording::new(&self.stats);
        let result = self
            .run(scheduler, priority, request, context, record.started)
            .await;
        match &result {
            Ok((_, rows, times)) => record.success(*rows, times),
            Err(e) => record.failure(failure_reason(e)),
        }
        result.map(|(response, _, _)| response)
    }

    /// The request's queue time counts from `received` (validation included) to its execution,
    /// and its output time through the hand-back to this task, so that the phases add up to
    /// its time in the runtime.
    async fn run(
        &self,
        scheduler: &Scheduler,
        priority: Option<u32>,
        request: InferRequest,
        context: &RequestContext,
        received: Instant,
    ) -> Result<(InferResponse, usize, ExecutionTimes), RuntimeError> {
        // Classification is applied by the caller, to the outputs returned.
        let InferRequest {
            inputs,
            outputs,
            parameters,
            classification: _,
        } = request;
        let wanted = self.requested_outputs(outputs)?;
        let inputs = self.ordered_inputs(inputs)?;
        let rows = self.rows(&inputs);
        let inputs = self
            .spec
            .inputs_to_backend(inputs)
            .map_err(RuntimeError::InvalidInput)?;
        let priority = match priority {
            Some(p) => p,
            None => self.priority(context.priority, &parameters)?,
        };
        let deadline = self.deadline(context, &parameters)?;
        let name = || self.spec.name.clone();
        let fail = |message: String| RuntimeError::Inference {
            model: name(),
            version: self.spec.version,
            message,
        };
        let queue_error = &|e: QueueError| match e {
            QueueError::Full(limit) => RuntimeError::QueueFull {
                model: name(),
                limit,
            },
            QueueError::TimedOut(waited) => RuntimeError::TimedOut {
                model: name(),
                waited_us: waited.as_micros(),
            },
            QueueError::Failed(message) => fail(message),
            QueueError::Stopped => RuntimeError::NotReady {
                model: name(),
                reason: "the model is being unloaded".into(),
            },
        };
        // A decoupled model's responses: raw outputs from the instance thread, turned into
        // responses here and sent to the caller's sink as they come.
        let decoupled = match (self.spec.config.is_decoupled(), &context.responses) {
            (false, _) => None,
            (true, Some(sink)) => Some((sink.clone(), tokio::sync::mpsc::channel(4))),
            (true, None) => return Err(self.not_streamed(context)),
        };
        let partial = decoupled.as_ref().map(|(_, (tx, _))| tx.clone());
        // The backend's inputs in, its outputs out (a sequence adds and takes its own).
        let execute = move |inputs: Vec<Tensor>| async move {
            if let Engine::Model { model, .. } = &self.engine {
                model
                    .check_inputs(&inputs)
                    .map_err(RuntimeError::InvalidInput)?;
            }
            scheduler
                .submit(inputs, priority, deadline, context.trace.as_ref(), partial)
                .map_err(queue_error)?
                .answer()
                .await
                .map_err(queue_error)
        };
        let executed = async {
            match self.sequences() {
                Some(sequences) => {
                    let flags = Flags::parse(&parameters, &self.spec.name)?;
                    if self.spec.max_batch_size > 0 && rows != 1 {
                        return Err(RuntimeError::InvalidInput(format!(
                            "a request of a sequence carries one row, not {rows} (model '{}')",
                            self.spec.name
                        )));
                    }
                    sequences.run(&flags, inputs, deadline, execute).await
                }
                None => execute(inputs).await,
            }
        };
        let (outputs, executed) = match decoupled {
            None => executed.await?,
            Some((sink, (tx, mut rx))) => {
                drop(tx);
                let forward = async {
                    while let Some(outputs) = rx.recv().await {
                        let response = self.response(outputs, &wanted).map_err(fail)?;
                        if sink.send(response).await.is_err() {
                            break; // the caller left; the backend learns it at its next send
                        }
                    }
                    Ok::<_, RuntimeError>(())
                };
                let (executed, forwarded) = tokio::join!(executed, forward);
                forwarded?;
                let (_, executed) = executed?;
                let response = InferResponse {
                    route: String::new(),
                    model_name: name(),
                    model_version: self.spec.version,
                    outputs: Vec::new(),
                    decoupled: true,
                    cached: false,
                };
                return Ok((response, rows, self.times(&executed, received)));
            }
        };
        let times = self.times(&executed, received);
        let response = self.response(outputs, &wanted).map_err(fail)?;
        Ok((response, rows, times))
    }

    fn times(&self, executed: &crate::scheduler::Executed, received: Instant) -> ExecutionTimes {
        ExecutionTimes {
            queue: executed.began.saturating_duration_since(received),
            compute_output: executed.times.compute_output + executed.ended.elapsed(),
            ..executed.times
        }
    }

    /// The response of the backend's `outputs` (all of them, in model order): those `wanted`,
    /// in that order, shaped as clients see them.
    fn response(&self, outputs: Vec<Tensor>, wanted: &[usize]) -> Result<InferResponse, String> {
        if outputs.len() != self.spec.outputs.len() {
            return Err(format!(
                "the backend returned {} outputs, the model declares {}",
                outputs.len(),
                self.spec.outputs.len()
            ));
        }
        let mut named: Vec<Option<Tensor>> = outputs.into_iter().map(Some).collect();
        let outputs = wanted
            .iter()
            .filter_map(|&ix| {
                let tensor = named[ix].take()?;
                Some(
                    self.spec
                        .output_from_backend(ix, tensor)
                        .map(|tensor| NamedTensor {
                            name: self.spec.outputs[ix].name.clone(),
                            tensor,
                        }),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(InferResponse {
            route: String::new(),
            model_name: self.spec.name.clone(),
            model_version: self.spec.version,
            outputs,
            decoupled: false,
            cached: false,
        })
    }

    /// A decoupled model called where its responses have nowhere to go.
    fn not_streamed(&self, context: &RequestContext) -> RuntimeError {
        let door = match context.protocol {
            crate::Protocol::Http | crate::Protocol::HttpV1 => "HTTP end point",
            crate::Protocol::Grpc => "ModelInfer RPC",
            crate::Protocol::Stream => "a stream consumer",
            crate::Protocol::Batch => "inferd batch",
        };
        RuntimeError::InvalidInput(format!(
            "{door} doesn't support models with decoupled transaction policy: model '{}' \
             answers a request with 0 or more responses, over gRPC ModelStreamInfer",
            self.spec.name
        ))
    }

    /// Rows of a checked request: its batch size, or 1 for a model without batching.
    pub(crate) fn rows(&self, inputs: &[Tensor]) -> usize {
        if self.spec.max_batch_size > 0 {
            inputs
                .first()
                .and_then(|t| t.shape().first())
                .copied()
                .unwrap_or(1)
        } else {
            1
        }
    }

    /// A request checked against the spec: its inputs in model order and the indices of the
    /// outputs to return.
    pub(crate) fn checked(
        &self,
        request: InferRequest,
    ) -> Result<(Vec<Tensor>, Vec<usize>, Parameters), RuntimeError> {
        let wanted = self.requested_outputs(request.outputs)?;
        let inputs = self.ordered_inputs(request.inputs)?;
        Ok((inputs, wanted, request.parameters))
    }

    /// A request answered from the response cache (`total` from receipt, `lookup` in the
    /// cache).
    pub(crate) fn record_cache_hit(&self, total: Duration, lookup: Duration) {
        self.stats.cache_hit(total, lookup);
    }

    /// Time a request spent looking in the cache and storing its answer.
    pub(crate) fn record_cache_miss(&self, spent: Duration) {
        self.stats.cache_miss(spent);
    }

    /// Starts recording one request in this version's statistics.
    pub(crate) fn recording(&self) -> Recording<'_> {
        Recording::new(&self.stats)
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

pub(crate) fn failure_reason(e: &RuntimeError) -> FailureReason {
    match e {
        RuntimeError::QueueFull { .. } => FailureReason::Rejected,
        RuntimeError::TimedOut { .. } => FailureReason::Timeout,
        RuntimeError::Inference { .. } => FailureReason::Backend,
        _ => FailureReason::Other,
    }
}

/// Records a request once: as it ended, or as CANCELED if its future is dropped first (the
/// client went away while it was queued or running).
pub(crate) struct Recording<'a> {
    stats: &'a ModelStats,
    started: Instant,
    done: bool,
}

impl<'a> Recording<'a> {
    fn new(stats: &'a ModelStats) -> Recording<'a> {
        stats
            .inflight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Recording {
            stats,
            started: Instant::now(),
            done: false,
        }
    }

    pub fn success(&mut self, rows: usize, times: &ExecutionTimes) {
        self.stats.success(rows, self.started.elapsed(), times);
        self.done = true;
    }

    pub fn failure(&mut self, reason: FailureReason) {
        self.stats.failure(reason, self.started.elapsed());
        self.done = true;
    }
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        self.stats
            .inflight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if !self.done {
            self.stats
                .failure(FailureReason::Canceled, self.started.elapsed());
        }
    }
}

pub(crate) fn names(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
