//! Model metadata (`GET /v2/models/{m}`, gRPC ModelMetadata).

use inferd_core::TensorSpec;
use inferd_runtime::ModelView;
use serde::Serialize;

use crate::pb;

#[derive(Debug, Clone, Serialize)]
pub struct ModelMetadata {
    pub name: String,
    /// Every ready version.
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: &'static str,
    /// Full shape: -1 leads when the model batches.
    pub shape: Vec<i64>,
}

impl ModelMetadata {
    pub fn of(view: &ModelView) -> ModelMetadata {
        let spec = &view.spec;
        let tensors = |specs: &[TensorSpec]| {
            specs
                .iter()
                .map(|t| TensorMetadata {
                    name: t.name.clone(),
                    datatype: t.datatype.as_str(),
                    shape: spec.full_dims(t),
                })
                .collect()
        };
        ModelMetadata {
            name: spec.name.clone(),
            versions: view.versions.iter().map(u64::to_string).collect(),
            platform: spec.platform.to_string(),
            inputs: tensors(&spec.inputs),
            outputs: tensors(&spec.outputs),
        }
    }
}

impl From<ModelMetadata> for pb::ModelMetadataResponse {
    fn from(m: ModelMetadata) -> Self {
        let ModelMetadata {
            name,
            versions,
            platform,
            inputs,
            outputs,
        } = m;
        let tensors = |ts: Vec<TensorMetadata>| {
            ts.into_iter()
                .map(|t| {
                    let TensorMetadata {
                        name,
                        datatype,
                        shape,
                    } = t;
                    pb::model_metadata_response::TensorMetadata {
                        name,
                        datatype: datatype.to_string(),
                        shape,
                    }
                })
                .collect()
        };
        pb::ModelMetadataResponse {
            name,
            versions,
            platform,
            inputs: tensors(inputs),
            outputs: tensors(outputs),
        }
    }
}
