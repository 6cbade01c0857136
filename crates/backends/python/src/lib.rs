//! The Python backend: a model directory with `model.py` (a class with `load()` and
//! `predict(inputs: dict[str, ndarray]) -> dict[str, ndarray]`), or a pickled scikit-learn
//! estimator (`model.joblib` / `model.pkl`, served by a built-in model). Each instance is a
//! separate worker process speaking a length-prefixed binary protocol over pipes (no JSON for
//! tensors); the interpreter and its GIL never sit inside the server, and a worker that dies
//! fails the request it was running, is restarted, and the next requests are served.
//!
//! Config: `[parameters] python = "/path/to/venv/bin/python"` (the model's own interpreter and
//! requirements; default: the server's `--python`), `call_timeout_ms` (default 60000: a call
//! that takes longer kills its worker, which is replaced, and fails the request). Inputs and
//! outputs come from config.toml, or from the model (`signature()` method, or the
//! scikit-learn built-in).

mod watchdog;
mod wire;
mod worker;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inferd_core::{
    Backend, BackendError, Instances, LoadedModel, ModelConfig, ModelSignature, Tensor, TensorSpec,
};

use watchdog::Watchdog;
use worker::{CallError, Worker};

const MODEL_FILES: &[&str] = &["model.py", "model.joblib", "model.pkl"];

/// How long a call may take unless `[parameters] call_timeout_ms` says otherwise.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub struct PythonBackend {
    python: PathBuf,
}

impl PythonBackend {
    /// Workers run `python` unless a model's config names its own interpreter.
    pub fn new(python: impl Into<PathBuf>) -> PythonBackend {
        PythonBackend {
            python: python.into(),
        }
    }
}

impl Backend for PythonBackend {
    fn name(&self) -> &'static str {
        "python"
    }

    fn platform(&self) -> &'static str {
        "python"
    }

    fn accepts(&self, version_dir: &Path, _: &ModelConfig) -> bool {
        MODEL_FILES.iter().any(|f| version_dir.join(f).is_file())
    }

    fn load(
        &self,
        version_dir: &Path,
        config: &ModelConfig,
    ) -> Result<Box<dyn LoadedModel>, BackendError> {
        let fail = |reason: String| BackendError::Load {
            path: version_dir.to_path_buf(),
            reason,
        };
        let python = match config.parameter("python") {
            Some(p) => PathBuf::from(p),
            None => self.python.clone(),
        };
        let timeout = match config.parameter("call_timeout_ms") {
            None => DEFAULT_CALL_TIMEOUT,
            Some(ms) => ms
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    fail(format!(
                        "parameters.call_timeout_ms must be a positive number of milliseconds, not '{ms}'"
                    ))
                })?,
        };
        let instances = config.instance_count.unwrap_or(1).max(1) as usize;
        let mut workers = Vec::with_capacity(instances);
        let mut declared = None;
        for _ in 0..instances {
            let (worker, signature) = Worker::start(&python, version_dir).map_err(fail)?;
            declared = signature;
            workers.push(Slot {
                worker: Some(worker),
                crashes: 0,
                started: Some(Instant::now()),
            });
        }
        let workers = Instances::new(workers).ok_or_else(|| fail("no worker".into()))?;
        let signature = signature(config, declared).map_err(fail)?;
        let name = version_dir
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let watchdog = Watchdog::start(&name).map_err(fail)?;
        tracing::debug!(dir = %version_dir.display(), ?signature, instances, "Python model ready");
        Ok(Box::new(PythonModel {
            workers,
            python,
            version_dir: version_dir.to_path_buf(),
            signature,
            watchdog,
            timeout,
        }))
    }
}

/// Full shapes (batch dimension first when batching): config.toml's declaration when it has
/// one, else the model's own.
fn signature(
    config: &ModelConfig,
    declared: Option<worker::Declared>,
) -> Result<ModelSignature, String> {
    if !config.inputs.is_empty() && !config.outputs.is_empty() {
        let batch = config.max_batch_size.unwrap_or(0) > 0;
        // The backend's view: reshaped dims, and what a sequence batcher adds.
        let full = |name: &str, datatype, dims: &[i64]| {
            let dims = batch.then_some(-1).into_iter().chain(dims.iter().copied());
            TensorSpec::new(name, datatype, dims.collect())
        };
        let mut inputs: Vec<TensorSpec> = config
            .inputs
            .iter()
            .map(|s| full(&s.name, s.datatype, s.model_dims()))
            .collect();
        let mut outputs: Vec<TensorSpec> = config
            .outputs
            .iter()
            .map(|s| full(&s.name, s.datatype, s.model_dims()))
            .collect();
        if let Some(sequences) = &config.sequence_batching {
            let controls = sequences.control_inputs.iter();
            inputs.extend(controls.map(|c| full(&c.name, c.datatype, &[1])));
            for state in &sequences.states {
                inputs.push(full(&state.input, state.datatype, &state.dims));
                outputs.push(full(&state.output, state.datatype, &state.dims));
            }
        }
        return Ok(ModelSignature { inputs, outputs });
    }
    declared
        .map(|d| ModelSignature {
            inputs: d.inputs,
            outputs: d.outputs,
        })
        .ok_or_else(|| {
            "a Python model declares its inputs and outputs in config.toml (name, datatype, dims; \
             max_batch_size > 0 when the first dimension is the batch) or in a signature() method"
                .to_string()
        })
}

struct PythonModel {
    workers: Instances<Slot>,
    python: PathBuf,
    version_dir: PathBuf,
    signature: ModelSignature,
    watchdog: Watchdog,
    timeout: Duration,
}

impl Drop for PythonModel {
    fn drop(&mut self) {
        self.watchdog.stop();
    }
}

/// One instance's worker, and how soon it may be started again.
#[derive(Default)]
struct Slot {
    /// `None` after the worker died, until it is restarted.
    worker: Option<Worker>,
    /// Deaths in a row shortly after a start; each doubles the wait before the next start.
    crashes: u32,
    started: Option<Instant>,
}

/// A worker that lives this long is healthy: its next death restarts it at once.
const HEALTHY: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Slot {
    /// Starts a worker unless one that kept dying must wait (crash-loop back-off: a model that
    /// kills its interpreter on every request must not make the server restart Python for
    /// each of them).
    fn ensure(&mut self, model: &PythonModel) -> Result<&mut Worker, String> {
        if self.worker.is_none() {
            // The first death restarts at once; from the second in a row the wait doubles.
            if self.crashes > 1
                && let Some(started) = self.started
            {
                let wait = (Duration::from_secs(1) * 2u32.saturating_pow(self.crashes - 2))
                    .min(MAX_BACKOFF);
                if started.elapsed() < wait {
                    return Err(format!(
                        "the Python worker died {} times in a row; the next restart is in {} ms",
                        self.crashes,
                        (wait - started.elapsed()).as_millis()
                    ));
                }
            }
            let (worker, _) = Worker::start(&model.python, &model.version_dir)?;
            tracing::info!(dir = %model.version_dir.display(), pid = worker.pid(), "Python worker started");
            self.started = Some(Instant::now());
            self.worker = Some(worker);
        }
        self.worker
            .as_mut()
            .ok_or_else(|| "no Python worker".to_string())
    }

    fn died(&mut self) {
        self.worker = None;
        let short = self.started.is_some_and(|s| s.elapsed() < HEALTHY);
        self.crashes = if short { self.crashes + 1 } else { 1 };
    }
}

impl LoadedModel for PythonModel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    /// Calls wait on a worker process: never on an async worker thread.
    fn may_run_inline(&self) -> bool {
        false
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let mut refuse = |_| {
            Err(
                "predict() returned a generator, but the model is not decoupled: set \
                 [model_transaction_policy] decoupled = true to stream its responses"
                    .to_string(),
            )
        };
        match self.call(inputs, &mut refuse)? {
            Some(outputs) => Ok(outputs),
            None => Err(BackendError::Inference(
                "predict() yielded no answer; only a decoupled model may answer 0 times".into(),
            )),
        }
    }

    fn infer_stream(
        &self,
        inputs: Vec<Tensor>,
        emit: &mut dyn FnMut(Vec<Tensor>) -> Result<(), String>,
    ) -> Result<(), BackendError> {
        let mut partial = |outputs| {
            let outputs = self.ordered(outputs).map_err(|e| e.to_string())?;
            emit(outputs)
        };
        // A predict() that returns instead of yielding answers once.
        match self.call(inputs, &mut partial)? {
            Some(outputs) => emit(outputs).map_err(BackendError::Inference),
            None => Ok(()),
        }
    }
}

impl PythonModel {
    /// One call on an instance's worker: the outputs it returned (in signature order), or
    /// `None` after handing each yielded response to `partial`.
    fn call(
        &self,
        inputs: Vec<Tensor>,
        partial: &mut dyn FnMut(Vec<(String, Tensor)>) -> Result<(), String>,
    ) -> Result<Option<Vec<Tensor>>, BackendError> {
        let mut slot = self.workers.take();
        let worker = slot.ensure(self).map_err(|e| {
            BackendError::Inference(format!("the Python worker is not running: {e}"))
        })?;
        let named: Vec<(&str, &Tensor)> = self
            .signature
            .inputs
            .iter()
            .map(|s| s.name.as_str())
            .zip(&inputs)
            .collect();
        let outputs = match worker.call(&named, &self.watchdog, self.timeout, partial) {
            Ok(outputs) => outputs,
            Err(CallError::TimedOut) => {
                tracing::error!(
                    dir = %self.version_dir.display(),
                    timeout_ms = self.timeout.as_millis() as u64,
                    "Python worker did not answer in time; killed"
                );
                slot.died();
                let restarted = match slot.ensure(self) {
                    Ok(_) => "a new worker was started".to_string(),
                    Err(e) => format!("no new worker was started: {e}"),
                };
                return Err(BackendError::Inference(format!(
                    "the Python worker did not answer within {} ms (parameters.call_timeout_ms) \
                     and was killed; {restarted}",
                    self.timeout.as_millis()
                )));
            }
            Err(CallError::Model(error)) => {
                return Err(BackendError::Inference(format!(
                    "the Python model raised:\n{error}"
                )));
            }
            Err(CallError::Abandoned(why)) => {
                // Stopped on purpose: a fresh worker, and no crash counted.
                slot.worker = None;
                let _ = slot.ensure(self);
                return Err(BackendError::Inference(why));
            }
            Err(CallError::Died(how)) => {
                tracing::error!(dir = %self.version_dir.display(), "Python worker died ({how})");
                slot.died();
                // Restart now, so the next request does not pay for it (unless it keeps dying).
                let restarted = match slot.ensure(self) {
                    Ok(_) => "it was restarted".to_string(),
                    Err(e) => format!("it was not restarted: {e}"),
                };
                return Err(BackendError::Inference(format!(
                    "the Python worker died ({how}) while running this request; {restarted}"
                )));
            }
        };
        outputs.map(|o| self.ordered(o)).transpose()
    }

    /// A worker's named outputs in signature order, checked against it.
    fn ordered(&self, mut outputs: Vec<(String, Tensor)>) -> Result<Vec<Tensor>, BackendError> {
        self.signature
            .outputs
            .iter()
            .map(|spec| {
                let at = outputs
                    .iter()
                    .position(|(name, _)| *name == spec.name)
                    .ok_or_else(|| {
                        BackendError::Inference(format!(
                            "predict() returned no '{}' (it returned: {})",
                            spec.name,
                            outputs
                                .iter()
                                .map(|(n, _)| n.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                let (_, tensor) = outputs.swap_remove(at);
                if tensor.datatype() != spec.datatype {
                    return Err(BackendError::Inference(format!(
                        "predict() returned '{}' as {} but the model declares {}",
                        spec.name,
                        tensor.datatype(),
                        spec.datatype
                    )));
                }
                Ok(tensor)
            })
            .collect()
    }
}
