//! The ONNX Runtime backend (`backend = "onnxruntime"`): ONNX Runtime's speed and execution
//! providers (CPU, CUDA) behind the same trait as tract. The library is loaded at run time from
//! a path (`scripts/get_onnxruntime.py` fetches it from the PyPI wheel), so the binary builds and
//! runs without it and only models that ask for this backend need it.
//!
//! Config `[parameters]`: `intra_op_threads` (default 1: the scheduler's instances are the
//! parallelism), `graph_optimization_level` (`disable`, `basic`, `extended`, `all`; default
//! `all`), `execution_providers` (e.g. `"cuda:0,cpu"`; default `cpu`; CUDA that is not
//! available falls back to CPU with a warning), `model_file` (default `model.onnx`).

mod convert;
mod options;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use inferd_core::{
    Backend, BackendError, Instances, LoadedModel, ModelConfig, ModelSignature, Tensor,
};
use ort::environment::Environment;
use ort::session::Session;

pub const DEFAULT_MODEL_FILE: &str = "model.onnx";

pub struct OnnxRuntimeBackend {
    library: PathBuf,
    environment: OnceLock<Result<Environment, String>>,
}

impl OnnxRuntimeBackend {
    /// A backend that loads ONNX Runtime from `library` when its first model loads.
    pub fn new(library: impl Into<PathBuf>) -> OnnxRuntimeBackend {
        OnnxRuntimeBackend {
            library: library.into(),
            environment: OnceLock::new(),
        }
    }

    /// Where `scripts/get_onnxruntime.py` puts the library by default.
    pub fn default_library() -> PathBuf {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"));
        cache
            .join("inferd")
            .join(format!("onnxruntime-{}", ort_version()))
            .join("libonnxruntime.so")
    }

    /// The process's ONNX Runtime environment (one per process, as ONNX Runtime requires).
    fn environment(&self) -> Result<&Environment, String> {
        // A missing file is not remembered: fetching the library fixes the next load.
        if self.environment.get().is_none() && !self.library.is_file() {
            return Err(format!(
                "the ONNX Runtime library is not at {}; fetch it with \
                 `python3 scripts/get_onnxruntime.py` or give its path with --onnxruntime-lib",
                self.library.display()
            ));
        }
        let env = self.environment.get_or_init(|| {
            ort::init_from(&self.library)
                .map_err(|e| {
                    format!(
                        "cannot load ONNX Runtime from {}: {e}",
                        self.library.display()
                    )
                })?
                .with_name("inferd")
                .with_telemetry(false)
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
        });
        env.as_ref().map_err(Clone::clone)
    }
}

/// The ONNX Runtime release the `api-23` feature targets.
fn ort_version() -> &'static str {
    "1.23.2"
}

impl Backend for OnnxRuntimeBackend {
    fn name(&self) -> &'static str {
        "onnxruntime"
    }

    fn platform(&self) -> &'static str {
        "onnxruntime_onnx"
    }

    fn accepts(&self, version_dir: &Path, config: &ModelConfig) -> bool {
        config.has_onnx_file(version_dir)
    }

    fn load(
        &self,
        version_dir: &Path,
        config: &ModelConfig,
    ) -> Result<Box<dyn LoadedModel>, BackendError> {
        let path = config.model_path(version_dir, DEFAULT_MODEL_FILE);
        let fail = |reason: String| BackendError::Load {
            path: path.clone(),
            reason,
        };
        let environment = self.environment().map_err(fail)?;
        let options = options::Options::from_config(config).map_err(fail)?;
        // A session runs one request at a time: one per instance.
        let instances = config.instance_count.unwrap_or(1).max(1) as usize;
        let sessions = (0..instances)
            .map(|_| options.session(environment, &path))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        let sessions = Instances::new(sessions).ok_or_else(|| fail("no session".into()))?;
        let signature = convert::signature(&sessions.take()).map_err(fail)?;
        tracing::debug!(path = %path.display(), ?signature, instances, "ONNX Runtime model ready");
        Ok(Box::new(OrtModel {
            sessions,
            signature,
        }))
    }
}

struct OrtModel {
    sessions: Instances<Session>,
    signature: ModelSignature,
}

impl LoadedModel for OrtModel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let mut session = self.sessions.take();
        convert::run(&mut session, &self.signature, &inputs).map_err(BackendError::Inference)
    }
}
