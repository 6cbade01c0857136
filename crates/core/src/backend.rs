use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{BackendError, DataType, ModelConfig, Tensor};

/// Name, element type and dimensions of one input or output; -1 marks a variable dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub dims: Vec<i64>,
    /// config.toml only (Triton's `label_filename`, on outputs): a file of the model
    /// directory, one label per line, line i for class i (the classification extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_filename: Option<String>,
    /// config.toml only (Triton's `format`, on inputs): how an image input's dimensions are
    /// laid out, for clients that prepare images; the server does not reorder anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TensorFormat>,
    /// config.toml only (Triton's `reshape`): the shape the backend has for this tensor, the
    /// batch dimension left out, when clients use `dims` instead (same element count). Inputs
    /// are reshaped before the backend, outputs after it; nothing is copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reshape: Option<Reshape>,
}

/// Triton's `ModelTensorReshape`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reshape {
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// The backend's dims for this tensor: `reshape` when it has one.
    pub fn model_dims(&self) -> &[i64] {
        self.reshape.as_ref().map_or(&self.dims, |r| &r.shape)
    }
}

/// `dims` (-1: variable, at most one) as concrete sizes holding `elements` elements; `None`
/// when they cannot.
pub fn resolve_dims(dims: &[i64], elements: usize) -> Option<Vec<usize>> {
    let known: usize = dims
        .iter()
        .filter(|d| **d >= 0)
        .map(|d| *d as usize)
        .product();
    let variable = dims.iter().filter(|d| **d < 0).count();
    match variable {
        0 if known == elements => Some(dims.iter().map(|d| *d as usize).collect()),
        1 if known > 0 && elements.is_multiple_of(known) => Some(
            dims.iter()
                .map(|d| {
                    if *d < 0 {
                        elements / known
                    } else {
                        *d as usize
                    }
                })
                .collect(),
        ),
        1 if known == 0 && elements == 0 => {
            Some(dims.iter().map(|d| (*d).max(0) as usize).collect())
        }
        _ => None,
    }
}

impl TensorSpec {
    /// A tensor as a model declares it: the config-only fields (labels, format) unset.
    pub fn new(name: impl Into<String>, datatype: DataType, dims: Vec<i64>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            datatype,
            dims,
            label_filename: None,
            format: None,
            reshape: None,
        }
    }
}

/// Triton's input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TensorFormat {
    None,
    Nhwc,
    Nchw,
}

impl TensorFormat {
    /// As Triton's model configuration names it.
    pub fn triton_name(self) -> &'static str {
        match self {
            TensorFormat::None => "FORMAT_NONE",
            TensorFormat::Nhwc => "FORMAT_NHWC",
            TensorFormat::Nchw => "FORMAT_NCHW",
        }
    }

    /// From Triton's name (`FORMAT_NCHW`) or config.toml's (`NCHW`).
    pub fn parse(name: &str) -> Option<TensorFormat> {
        match name.strip_prefix("FORMAT_").unwrap_or(name) {
            "NONE" => Some(TensorFormat::None),
            "NHWC" => Some(TensorFormat::Nhwc),
            "NCHW" => Some(TensorFormat::Nchw),
            _ => None,
        }
    }
}

/// What a loaded model takes and returns, with full shapes (batch dimension included).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelSignature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// A model format runtime. Backends never see the wire protocols.
pub trait Backend: Send + Sync {
    /// Short name used in config.toml's `backend` field, e.g. `tract`.
    fn name(&self) -> &'static str;

    /// Triton-style platform reported in metadata, e.g. `onnx`.
    fn platform(&self) -> &'static str;

    /// Whether this backend can load the model in `version_dir` (looks at file names only).
    fn accepts(&self, version_dir: &Path, config: &ModelConfig) -> bool;

    /// Loads and prepares the model once; the result serves many requests concurrently.
    fn load(
        &self,
        version_dir: &Path,
        config: &ModelConfig,
    ) -> Result<Box<dyn LoadedModel>, BackendError>;
}

/// One loaded model version.
pub trait LoadedModel: Send + Sync {
    fn signature(&self) -> &ModelSignature;

    /// Runs the model. `inputs` follow `signature().inputs` in order and already match their
    /// datatypes and shapes; the result follows `signature().outputs`.
    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError>;

    /// Runs the model of a decoupled request: `emit` takes each response's outputs as the
    /// model makes them (0 or more; it fails once the caller stopped listening). Backends that
    /// stream override it; the others answer once.
    fn infer_stream(
        &self,
        inputs: Vec<Tensor>,
        emit: &mut dyn FnMut(Vec<Tensor>) -> Result<(), String>,
    ) -> Result<(), BackendError> {
        let outputs = self.infer(inputs)?;
        emit(outputs).map_err(BackendError::Inference)
    }

    /// Checks one request's inputs (in signature order, datatypes and shapes already checked)
    /// for what only the backend knows, e.g. BYTES that must be UTF-8 text. Runs before the
    /// request is queued, so a bad request is refused alone instead of failing a batch.
    fn check_inputs(&self, _inputs: &[Tensor]) -> Result<(), String> {
        Ok(())
    }

    /// Whether a call may run on the requesting thread when an instance is idle: true for
    /// in-process computation, false for calls that wait on something outside the process (a
    /// worker, a device), which must never hold an async worker thread.
    fn may_run_inline(&self) -> bool {
        true
    }
}
