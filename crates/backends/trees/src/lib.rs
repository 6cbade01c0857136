//! The tree backend: XGBoost (`model.json`) and LightGBM (`model.txt`) models as the libraries
//! save them, evaluated in Rust (flat node arrays, a batch walked tree by tree). One input
//! `input` [batch, features] FP32 (NaN = missing); one output `predictions` with what the
//! library's `predict` returns: probabilities ([batch] for binary, [batch, classes] for
//! multi-class) or values for regression.

mod forest;
mod lightgbm;
mod xgboost;

use std::path::{Path, PathBuf};

use inferd_core::{
    Backend, BackendError, DataType, LoadedModel, ModelConfig, ModelSignature, Tensor, TensorData,
    TensorSpec,
};

pub use forest::Forest;
/// The parsers by format, for the fuzz targets (`fuzz/`).
pub use lightgbm::parse as parse_lightgbm;
pub use xgboost::parse as parse_xgboost;

pub struct TreeBackend;

fn model_file(version_dir: &Path, config: &ModelConfig) -> Option<PathBuf> {
    match config.parameter("model_file") {
        Some(f) => Some(version_dir.join(f)),
        None => ["model.json", "model.txt"]
            .iter()
            .map(|f| version_dir.join(f))
            .find(|p| p.is_file()),
    }
}

/// Reads an XGBoost JSON or LightGBM text model.
pub fn load_forest(path: &Path) -> Result<Forest, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    if text.trim_start().starts_with('{') {
        xgboost::parse(&text)
    } else {
        lightgbm::parse(&text)
    }
}

impl Backend for TreeBackend {
    fn name(&self) -> &'static str {
        "trees"
    }

    fn platform(&self) -> &'static str {
        "tree_ensemble"
    }

    fn accepts(&self, version_dir: &Path, config: &ModelConfig) -> bool {
        model_file(version_dir, config).is_some_and(|p| {
            p.is_file() && p.extension().is_some_and(|e| e == "json" || e == "txt")
        })
    }

    fn load(
        &self,
        version_dir: &Path,
        config: &ModelConfig,
    ) -> Result<Box<dyn LoadedModel>, BackendError> {
        let path =
            model_file(version_dir, config).unwrap_or_else(|| version_dir.join("model.json"));
        let forest = load_forest(&path).map_err(|reason| BackendError::Load {
            path: path.clone(),
            reason,
        })?;
        let outputs = if forest.groups > 1 {
            vec![-1, forest.groups as i64]
        } else {
            vec![-1]
        };
        let signature = ModelSignature {
            inputs: vec![TensorSpec::new(
                "input",
                DataType::F32,
                vec![-1, forest.features as i64],
            )],
            outputs: vec![TensorSpec::new("predictions", DataType::F32, outputs)],
        };
        tracing::debug!(path = %path.display(), trees = forest.tree_count(), "tree model ready");
        Ok(Box::new(TreeModel { forest, signature }))
    }
}

struct TreeModel {
    forest: Forest,
    signature: ModelSignature,
}

impl LoadedModel for TreeModel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let input = inputs
            .into_iter()
            .next()
            .ok_or_else(|| BackendError::Inference("no input".into()))?;
        let rows = input.shape().first().copied().unwrap_or(0);
        let Some(data) = input.to_slice::<f32>() else {
            return Err(BackendError::Inference("input must be FP32".into()));
        };
        let values = self.forest.predict(&data);
        let shape = if self.forest.groups > 1 {
            vec![rows, self.forest.groups]
        } else {
            vec![rows]
        };
        Tensor::new(shape, TensorData::F32(values))
            .map(|t| vec![t])
            .map_err(BackendError::Inference)
    }
}
