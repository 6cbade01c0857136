//! The Python backend: a model directory with `model.py` (a class with `load()` and
//! `predict(inputs: dict[str, ndarray]) -> dict[str, ndarray]`), or a pickled scikit-learn
//! estimator (`model.joblib` / `model.pkl`, served by a built-in model). Each instance is a
//! separate worker process speaking a length-prefixed binary protocol over pipes (no JSON for
//! tensors); the interpreter and its GIL never sit inside the server, and a worker that dies
//! fails the request it was running, is restarted, and the next requests are served.
//!
//! Config: `[parameters] python = "/path/to/venv/bin/python"` (the model's own interpreter and
//! requirements; default: the server's `--python`). Inputs and outputs come from config.toml,
//! or from the model (`signature()` method, or the scikit-learn built-in).

mod wire;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use inferd_core::{
    Backend, BackendError, LoadedModel, ModelConfig, ModelSignature, Tensor, TensorSpec,
};

use worker::{CallError, Worker};

const MODEL_FILES: &[&str] = &["model.py", "model.joblib", "model.pkl"];

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
        let instances = config.instance_count.unwrap_or(1).max(1) as usize;
        let mut workers = Vec::with_capacity(instances);
        let mut declared = None;
        for _ in 0..instances {
            let (worker, signature) = Worker::start(&python, version_dir).map_err(fail)?;
            declared = signature;
            workers.push(Mutex::new(Some(worker)));
        }
        let signature = signature(config, declared).map_err(fail)?;
        tracing::debug!(dir = %version_dir.display(), ?signature, instances, "Python model ready");
        Ok(Box::new(PythonModel {
            workers,
            python,
            version_dir: version_dir.to_path_buf(),
            signature,
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
        let full = |specs: &[TensorSpec]| -> Vec<TensorSpec> {
            specs
                .iter()
                .map(|s| TensorSpec {
                    dims: batch
                        .then_some(-1)
                        .into_iter()
                        .chain(s.dims.iter().copied())
                        .collect(),
                    ..s.clone()
                })
                .collect()
        };
        return Ok(ModelSignature {
            inputs: full(&config.inputs),
            outputs: full(&config.outputs),
        });
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
    /// `None` after a worker died and could not be restarted yet.
    workers: Vec<Mutex<Option<Worker>>>,
    python: PathBuf,
    version_dir: PathBuf,
    signature: ModelSignature,
}

impl PythonModel {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Worker>> {
        for worker in &self.workers {
            if let Ok(guard) = worker.try_lock() {
                return guard;
            }
        }
        self.workers[0].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn restart(&self, slot: &mut Option<Worker>) -> Result<(), String> {
        let (worker, _) = Worker::start(&self.python, &self.version_dir)?;
        tracing::info!(dir = %self.version_dir.display(), pid = worker.pid(), "Python worker restarted");
        *slot = Some(worker);
        Ok(())
    }
}

impl LoadedModel for PythonModel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let mut slot = self.slot();
        if slot.is_none() {
            self.restart(&mut slot).map_err(|e| {
                BackendError::Inference(format!("the Python worker cannot be restarted: {e}"))
            })?;
        }
        let Some(worker) = slot.as_mut() else {
            return Err(BackendError::Inference("no Python worker".into()));
        };
        let named: Vec<(&str, &Tensor)> = self
            .signature
            .inputs
            .iter()
            .map(|s| s.name.as_str())
            .zip(&inputs)
            .collect();
        let outputs = match worker.call(&named) {
            Ok(outputs) => outputs,
            Err(CallError::Model(error)) => {
                return Err(BackendError::Inference(format!(
                    "the Python model raised:\n{error}"
                )));
            }
            Err(CallError::Died(how)) => {
                *slot = None;
                tracing::error!(dir = %self.version_dir.display(), "Python worker died ({how})");
                // Restart now so the next request does not pay for it; a failure is retried then.
                let restarted = match self.restart(&mut slot) {
                    Ok(()) => "it was restarted".to_string(),
                    Err(e) => format!("restarting it failed: {e}"),
                };
                return Err(BackendError::Inference(format!(
                    "the Python worker died ({how}) while running this request; {restarted}"
                )));
            }
        };
        let mut outputs = outputs;
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
