//! The runtime over a real repository: fixture models, a broken model, validation errors.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use inferd_backend_tract::TractBackend;
use inferd_core::{NamedTensor, Tensor, TensorData};
use inferd_runtime::{ErrorKind, InferRequest, ModelState, Runtime};

use common::{copy_dir, fixtures, infer, iris_input, temp_repository};

/// A repository with iris_logreg (versions 1 and 2), mlp, a garbage model file, a model with an
/// unsupported operator and a model whose config.toml does not parse.
fn repository(tag: &str) -> PathBuf {
    let repo = temp_repository(tag);
    copy_dir(&fixtures().join("models/iris_logreg"), &repo.join("iris/1"));
    copy_dir(
        &fixtures().join("models/iris_logreg/1"),
        &repo.join("iris/2"),
    );
    copy_dir(&fixtures().join("models/mlp"), &repo.join("mlp"));
    copy_dir(
        &fixtures().join("broken/unsupported_op"),
        &repo.join("frob"),
    );
    std::fs::create_dir_all(repo.join("garbage/1")).unwrap();
    std::fs::write(repo.join("garbage/1/model.onnx"), b"not a model").unwrap();
    copy_dir(&fixtures().join("models/mlp"), &repo.join("badconfig"));
    std::fs::write(
        repo.join("badconfig/config.toml"),
        "max_batch_size = \"eight\"",
    )
    .unwrap();
    repo
}

async fn runtime(tag: &str) -> Arc<Runtime> {
    let runtime = Arc::new(Runtime::new(repository(tag), vec![Arc::new(TractBackend)]));
    runtime.load_repository().await.unwrap();
    runtime
}

#[tokio::test]
async fn broken_models_are_reported_and_the_rest_serve() {
    let runtime = runtime("broken").await;
    let index = runtime.index();
    let state = |name: &str| {
        index
            .iter()
            .find(|e| e.name == name)
            .map(|e| (e.state, e.reason.clone()))
            .unwrap()
    };
    assert_eq!(state("iris").0, ModelState::Ready);
    assert_eq!(state("mlp").0, ModelState::Ready);
    let (s, reason) = state("garbage");
    assert!(
        s == ModelState::Unavailable && reason.contains("not a readable ONNX model"),
        "{reason}"
    );
    let (s, reason) = state("frob");
    assert!(
        s == ModelState::Unavailable && reason.contains("Frobnicate"),
        "{reason}"
    );
    let (s, reason) = state("badconfig");
    assert!(
        s == ModelState::Unavailable && reason.contains("config.toml"),
        "{reason}"
    );

    let readiness = runtime.readiness();
    assert!(!readiness.ready);
    assert_eq!(readiness.not_ready.len(), 3, "{:?}", readiness.not_ready);

    let request = || InferRequest {
        inputs: vec![iris_input(1)],
        ..Default::default()
    };
    let err = infer(&runtime, "garbage", None, request())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("garbage"), "{err}");
    assert_eq!(
        runtime.describe("garbage", None).unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    let err = infer(&runtime, "nope", None, request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = infer(&runtime, "iris", Some("7"), request())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        runtime.describe("iris", Some("7")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn latest_version_serves_by_default() {
    let runtime = runtime("latest").await;
    // Default policy latest(1): only version 2 is loaded.
    assert_eq!(runtime.ready_versions("iris"), [2]);
    assert_eq!(runtime.describe("iris", None).unwrap().spec.version, 2);
    let request = InferRequest {
        inputs: vec![iris_input(3)],
        ..Default::default()
    };
    let response = infer(&runtime, "iris", None, request).await.unwrap();
    assert_eq!(response.model_version, 2);
    let names: Vec<_> = response.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["label", "probabilities"]);
    assert_eq!(response.outputs[1].tensor.shape(), [3, 3]);
}

#[tokio::test]
async fn requests_are_validated_with_named_inputs() {
    let runtime = runtime("validate").await;
    let run = |inputs: Vec<NamedTensor>, outputs: Option<Vec<String>>| {
        let runtime = Arc::clone(&runtime);
        async move {
            let request = InferRequest {
                inputs,
                outputs,
                ..Default::default()
            };
            infer(&runtime, "iris", None, request)
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let wrong_name = NamedTensor {
        name: "x".into(),
        ..iris_input(1)
    };
    assert!(
        run(vec![wrong_name], None)
            .await
            .contains("unknown input 'x'")
    );
    assert!(run(vec![], None).await.contains("missing input 'X'"));
    let wrong_type = NamedTensor {
        name: "X".into(),
        tensor: Tensor::new(vec![1, 4], TensorData::F64(vec![0.0; 4])).unwrap(),
    };
    assert!(
        run(vec![wrong_type], None)
            .await
            .contains("input 'X' has datatype FP64 but model 'iris' expects FP32")
    );
    let wrong_shape = NamedTensor {
        name: "X".into(),
        tensor: Tensor::new(vec![2, 3], TensorData::F32(vec![0.0; 6])).unwrap(),
    };
    assert!(
        run(vec![wrong_shape], None)
            .await
            .contains("input 'X' has shape [2, 3]")
    );
    assert!(
        run(vec![iris_input(65)], None)
            .await
            .contains("batch size 65")
    );
    assert!(
        run(vec![iris_input(1), iris_input(1)], None)
            .await
            .contains("more than once")
    );
    assert!(
        run(vec![iris_input(1)], Some(vec!["nope".into()]))
            .await
            .contains("unknown output 'nope'")
    );

    let request = InferRequest {
        inputs: vec![iris_input(1)],
        outputs: Some(vec!["probabilities".into()]),
        ..Default::default()
    };
    let only = infer(&runtime, "iris", None, request).await.unwrap();
    assert_eq!(only.outputs.len(), 1);
    assert_eq!(only.outputs[0].name, "probabilities");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_model_is_left_loading_after_load_repository() {
    // Loads finish on other threads; each must find its slot however fast it is.
    let repo = repository("loading");
    for _ in 0..20 {
        let runtime = Arc::new(Runtime::new(&repo, vec![Arc::new(TractBackend)]));
        runtime.load_repository().await.unwrap();
        let readiness = runtime.readiness();
        assert!(!readiness.loading, "{:?}", readiness.not_ready);
        assert_eq!(runtime.ready_versions("mlp"), [1]);
    }
}
