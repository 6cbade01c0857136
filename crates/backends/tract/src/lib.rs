//! The embedded default backend: ONNX models run by tract, in pure Rust, with nothing installed.

mod convert;
mod ops;
mod signature;
mod zipmap;

use std::path::Path;
use std::sync::Arc;

use inferd_core::{Backend, BackendError, LoadedModel, ModelConfig, ModelSignature, Tensor};
use tract_onnx::prelude::*;

/// Model file looked for in each version directory unless `parameters.model_file` says otherwise.
pub const DEFAULT_MODEL_FILE: &str = "model.onnx";

#[derive(Debug, Default, Clone, Copy)]
pub struct TractBackend;

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }

    /// Triton's name for ONNX models, which clients (perf_analyzer, model analyzer) look for;
    /// the backend field says tract.
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
        let onnx = onnx_framework();
        let mut proto = onnx
            .proto_model_for_path(&path)
            .map_err(|e| fail(format!("not a readable ONNX model: {e:#}")))?;
        for output in zipmap::replace_with_tensors(&mut proto) {
            tracing::warn!(
                path = %path.display(),
                "ZipMap output '{output}' is served as a FP32 tensor [batch, classes]: the protocol has no maps"
            );
        }
        ops::split_unsupported_post_transforms(&mut proto);
        let missing = signature::unsupported_ops(&proto, &onnx);
        if !missing.is_empty() {
            return Err(BackendError::UnsupportedOperators {
                path,
                backend: "tract",
                ops: missing.join(", "),
            });
        }
        let declared = signature::declared(&proto).map_err(fail)?;
        let mut model = onnx
            .model_for_proto_model(&proto)
            .map_err(|e| fail(format!("{e:#}")))?;
        signature::fix_input_facts(&mut model, &declared).map_err(|e| fail(format!("{e:#}")))?;
        let mut typed = model
            .into_optimized()
            .map_err(|e| fail(format!("cannot optimise the graph: {e:#}")))?;
        ops::replace_tract_kernels(&mut typed).map_err(|e| fail(format!("{e:#}")))?;
        let signature = signature::resolved(&declared, &typed).map_err(fail)?;
        let plan = typed.into_runnable().map_err(|e| fail(format!("{e:#}")))?;
        tracing::debug!(path = %path.display(), ?signature, "tract model ready");
        Ok(Box::new(TractModel { plan, signature }))
    }
}

/// The ONNX front end with tract's operators plus the ONNX-ML ones of our own.
fn onnx_framework() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    ops::register(&mut onnx.op_register);
    onnx
}

struct TractModel {
    plan: Arc<TypedRunnableModel>,
    signature: ModelSignature,
}

impl LoadedModel for TractModel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let inputs = inputs
            .iter()
            .zip(&self.signature.inputs)
            .map(|(t, spec)| {
                convert::to_tract(t)
                    .map(TValue::from)
                    .map_err(|e| BackendError::Inference(format!("input '{}': {e}", spec.name)))
            })
            .collect::<Result<TVec<_>, _>>()?;
        let outputs = self
            .plan
            .run(inputs)
            .map_err(|e| BackendError::Inference(format!("{e:#}")))?;
        outputs
            .into_iter()
            .zip(&self.signature.outputs)
            .map(|(t, spec)| {
                convert::from_tract(t.into_tensor())
                    .map_err(|e| BackendError::Inference(format!("output '{}': {e}", spec.name)))
            })
            .collect()
    }

    /// tract keeps strings as Rust `String`s: BYTES inputs must be UTF-8 text, checked per
    /// request so one bad request cannot fail the batch it would have joined.
    fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), String> {
        for (tensor, spec) in inputs.iter().zip(&self.signature.inputs) {
            if let Some(i) = tensor
                .byte_elements()
                .position(|e| std::str::from_utf8(e).is_err())
            {
                return Err(format!(
                    "input '{}': BYTES element {i} is not valid UTF-8 text, which model inputs of \
                     string type need",
                    spec.name
                ));
            }
        }
        Ok(())
    }
}
