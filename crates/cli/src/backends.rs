//! The backends `serve` and `batch` run models with, in the order they are tried.

use std::path::PathBuf;
use std::sync::Arc;

use inferd_backend_onnxruntime::OnnxRuntimeBackend;
use inferd_backend_processing::{PostprocessBackend, TokenizerBackend};
use inferd_backend_python::PythonBackend;
use inferd_backend_tract::TractBackend;
use inferd_backend_trees::TreeBackend;
use inferd_core::Backend;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DefaultBackend {
    Tract,
    Onnxruntime,
}

/// Backend flags shared by `serve` and `batch`.
#[derive(clap::Args)]
pub struct BackendArgs {
    /// Backend for models whose config.toml names none and that several backends could run
    /// (model.onnx: tract, the embedded default, or onnxruntime).
    #[arg(
        long,
        env = "INFERD_DEFAULT_BACKEND",
        value_enum,
        default_value = "tract"
    )]
    pub default_backend: DefaultBackend,

    /// ONNX Runtime's shared library, loaded when the first onnxruntime model loads
    /// (fetch it with `python3 scripts/get_onnxruntime.py`). Default: where that script puts it.
    #[arg(long, env = "INFERD_ONNXRUNTIME_LIB", value_name = "PATH")]
    pub onnxruntime_lib: Option<PathBuf>,

    /// Python interpreter of the Python backend's workers, unless a model's config names its
    /// own (`[parameters] python = ".../venv/bin/python"`); it needs numpy.
    #[arg(long, env = "INFERD_PYTHON", default_value = "python3")]
    pub python: PathBuf,
}

impl BackendArgs {
    /// The first backend that recognises a model's files runs it, unless its config names one.
    pub fn backends(&self) -> Vec<Arc<dyn Backend>> {
        let onnxruntime: Arc<dyn Backend> = Arc::new(OnnxRuntimeBackend::new(
            self.onnxruntime_lib
                .clone()
                .unwrap_or_else(OnnxRuntimeBackend::default_library),
        ));
        let tract: Arc<dyn Backend> = Arc::new(TractBackend);
        let python: Arc<dyn Backend> = Arc::new(PythonBackend::new(self.python.clone()));
        let trees: Arc<dyn Backend> = Arc::new(TreeBackend);
        // Before trees, whose JSON models a tokenizer.json could be taken for.
        let tokenizer: Arc<dyn Backend> = Arc::new(TokenizerBackend);
        let postprocess: Arc<dyn Backend> = Arc::new(PostprocessBackend);
        // Named in config.toml only: they have no files to recognise.
        let feast: Arc<dyn Backend> = Arc::new(inferd_backend_features::feast());
        let redis: Arc<dyn Backend> = Arc::new(inferd_backend_features::redis());
        let mut backends = match self.default_backend {
            // Python before trees: a model.py directory may also hold a .json or .txt file.
            DefaultBackend::Tract => {
                vec![tract, onnxruntime, python, tokenizer, trees, postprocess]
            }
            DefaultBackend::Onnxruntime => {
                vec![onnxruntime, tract, python, tokenizer, trees, postprocess]
            }
        };
        backends.extend([feast, redis]);
        backends
    }
}
