//! Helpers shared by the runtime's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use inferd_core::{NamedTensor, Tensor, TensorData};
use inferd_runtime::{
    InferRequest, InferResponse, Protocol, RequestContext, Runtime, RuntimeError, Target,
};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// An empty directory for one test's repository.
pub fn temp_repository(tag: &str) -> PathBuf {
    let repo = std::env::temp_dir().join(format!("inferd-runtime-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&repo);
    std::fs::create_dir_all(&repo).unwrap();
    repo
}

pub fn iris_input(rows: usize) -> NamedTensor {
    let tensor = Tensor::new(vec![rows, 4], TensorData::F32(vec![5.1; rows * 4])).unwrap();
    NamedTensor {
        name: "X".into(),
        tensor,
    }
}

/// One request to `model` (the router picks the version unless `version` names one).
pub async fn infer(
    runtime: &std::sync::Arc<Runtime>,
    model: &str,
    version: Option<&str>,
    request: InferRequest,
) -> Result<InferResponse, RuntimeError> {
    let context = RequestContext::new(Protocol::Grpc);
    runtime
        .infer(&Target::new(model, version), request, &context)
        .await
}
