//! Versions entering and leaving service: polling, the load/unload API, swaps, warmup.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use inferd_backend_tract::TractBackend;
use inferd_core::{Backend, BackendError, LoadedModel, ModelConfig, ModelSignature, Tensor};
use inferd_runtime::{ControlMode, ErrorKind, InferRequest, ModelState, Runtime};

use common::{copy_dir, fixtures, infer, iris_input, temp_repository};

fn add_version(repo: &Path, model: &str, version: u64, fixture: &str) {
    copy_dir(
        &fixtures().join(format!("models/{fixture}/1")),
        &repo.join(format!("{model}/{version}")),
    );
}

fn runtime(repo: &Path, mode: ControlMode) -> Arc<Runtime> {
    Arc::new(Runtime::new(repo, vec![Arc::new(TractBackend)]).with_control_mode(mode))
}

async fn infer_iris(runtime: &Arc<Runtime>) -> (u64, Vec<f32>) {
    let request = InferRequest {
        inputs: vec![iris_input(1)],
        outputs: Some(vec!["probabilities".into()]),
        ..Default::default()
    };
    let response = infer(runtime, "iris", None, request).await.unwrap();
    let probabilities = match response.outputs[0].tensor.data() {
        inferd_core::TensorData::F32(v) => v,
        other => panic!("unexpected {other:?}"),
    };
    (response.model_version, probabilities)
}

/// Inferences served by the load of `version` now (a reload starts from 0).
fn served_by(runtime: &Runtime, version: u64) -> u64 {
    runtime
        .statistics(Some("iris"), Some(&version.to_string()))
        .unwrap()[0]
        .stats
        .inference_count
}

/// Tract whose inferences wait while the gate is closed: a request held in flight.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>, Arc<AtomicBool>);

impl Gate {
    fn close(&self) {
        *self.0.0.lock().unwrap() = true;
    }

    fn open(&self) {
        *self.0.0.lock().unwrap() = false;
        self.0.1.notify_all();
    }

    /// Until a request waits at the gate.
    async fn waiting(&self) {
        while !self.1.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
}

struct GatedModel(Box<dyn LoadedModel>, Gate);

impl LoadedModel for GatedModel {
    fn signature(&self) -> &ModelSignature {
        self.0.signature()
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let mut closed = self.1.0.0.lock().unwrap();
        while *closed {
            self.1.1.store(true, Ordering::SeqCst);
            closed = self.1.0.1.wait(closed).unwrap();
        }
        drop(closed);
        self.0.infer(inputs)
    }

    // Waits on the gate: never on an async worker.
    fn may_run_inline(&self) -> bool {
        false
    }
}

impl Backend for Gate {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn platform(&self) -> &'static str {
        "onnx"
    }

    fn accepts(&self, dir: &Path, config: &ModelConfig) -> bool {
        TractBackend.accepts(dir, config)
    }

    fn load(&self, dir: &Path, config: &ModelConfig) -> Result<Box<dyn LoadedModel>, BackendError> {
        let inner = TractBackend.load(dir, config)?;
        Ok(Box::new(GatedModel(inner, self.clone())))
    }
}

fn state(runtime: &Runtime, model: &str, version: u64) -> (ModelState, String) {
    runtime
        .index()
        .into_iter()
        .find(|e| e.name == model && e.version == Some(version))
        .map(|e| (e.state, e.reason))
        .unwrap_or_else(|| panic!("{model}/{version} not in the index"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_swaps_versions_in_and_out() {
    let repo = temp_repository("poll");
    add_version(&repo, "iris", 1, "iris_logreg");
    let gate = Gate::default();
    let runtime = Arc::new(
        Runtime::new(&repo, vec![Arc::new(gate.clone())]).with_control_mode(ControlMode::Poll),
    );
    runtime.load_repository().await.unwrap();
    let (version, before) = infer_iris(&runtime).await;
    assert_eq!(version, 1);

    // A request in flight on version 1 across the swap finishes on it.
    gate.close();
    let held = {
        let runtime = Arc::clone(&runtime);
        tokio::spawn(async move { infer_iris(&runtime).await })
    };
    gate.waiting().await;
    add_version(&repo, "iris", 2, "iris_logreg");
    runtime.poll().await.unwrap();
    assert_eq!(state(&runtime, "iris", 1).0, ModelState::Unloading);
    gate.open();
    assert_eq!(held.await.unwrap().0, 1);
    assert_eq!(infer_iris(&runtime).await.0, 2);
    assert_eq!(
        state(&runtime, "iris", 1),
        (ModelState::Unavailable, "unloaded".into())
    );

    // New weights in version 2: reloaded in place, answers change, the version stays.
    std::fs::copy(
        fixtures().join("models/iris_forest/1/model.onnx"),
        repo.join("iris/2/model.onnx"),
    )
    .unwrap();
    runtime.poll().await.unwrap();
    let (version, after) = infer_iris(&runtime).await;
    assert_eq!(version, 2);
    assert_ne!(before, after);

    // Nothing changed: nothing reloads (the same load keeps serving, its counts go on).
    let served = served_by(&runtime, 2);
    assert!(served > 0);
    runtime.poll().await.unwrap();
    assert_eq!(served_by(&runtime, 2), served);

    // A corrupt version 3: version 2 keeps serving, the index says why, readiness holds.
    std::fs::create_dir_all(repo.join("iris/3")).unwrap();
    std::fs::write(repo.join("iris/3/model.onnx"), b"corrupt").unwrap();
    runtime.poll().await.unwrap();
    assert_eq!(infer_iris(&runtime).await.0, 2);
    let (s, reason) = state(&runtime, "iris", 3);
    assert_eq!(s, ModelState::Unavailable);
    assert!(reason.contains("not a readable ONNX model"), "{reason}");
    assert_eq!(state(&runtime, "iris", 2).0, ModelState::Ready);
    assert!(runtime.readiness().ready, "{:?}", runtime.readiness());

    // Fixed: version 3 serves and version 2 leaves.
    add_version(&repo, "iris", 3, "iris_logreg");
    runtime.poll().await.unwrap();
    assert_eq!(infer_iris(&runtime).await.0, 3);
    assert_eq!(state(&runtime, "iris", 2).1, "unloaded");

    // The model leaves the repository: it is unloaded.
    std::fs::remove_dir_all(repo.join("iris")).unwrap();
    runtime.poll().await.unwrap();
    assert_eq!(
        runtime.describe("iris", None).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn explicit_mode_loads_and_unloads_through_the_api() {
    let repo = temp_repository("explicit");
    add_version(&repo, "iris", 1, "iris_logreg");
    std::fs::create_dir_all(repo.join("broken/1")).unwrap();
    std::fs::write(repo.join("broken/1/model.onnx"), b"corrupt").unwrap();
    let runtime = runtime(&repo, ControlMode::Explicit);
    runtime.load_startup(&[]).await.unwrap();
    let row = |name: &str| {
        runtime
            .index()
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| (e.version, e.state, e.reason))
            .unwrap()
    };
    assert_eq!(
        row("iris"),
        (None, ModelState::Unavailable, "not loaded".into())
    );
    assert!(runtime.readiness().ready);

    runtime.load_model("iris", None).await.unwrap();
    assert_eq!(infer_iris(&runtime).await.0, 1);
    runtime.unload_model("iris").await.unwrap();
    let request = InferRequest {
        inputs: vec![iris_input(1)],
        ..Default::default()
    };
    let err = infer(&runtime, "iris", None, request).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("unloaded"), "{err}");
    assert_eq!(
        state(&runtime, "iris", 1),
        (ModelState::Unavailable, "unloaded".into())
    );
    runtime.load_model("iris", None).await.unwrap();
    assert_eq!(infer_iris(&runtime).await.0, 1);

    // A config override for this load.
    let config = ModelConfig::parse_json(r#"{"instance_count": 2, "max_batch_size": 8}"#).unwrap();
    runtime.load_model("iris", Some(config)).await.unwrap();
    let spec = runtime.describe("iris", None).unwrap().spec;
    assert_eq!((spec.instance_count, spec.max_batch_size), (2, 8));

    let err = runtime.load_model("broken", None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.to_string().contains("not a readable ONNX model"),
        "{err}"
    );
    assert_eq!(state(&runtime, "broken", 1).0, ModelState::Unavailable);
    // A failed API load is the caller's answer; it does not make the server unready.
    assert!(runtime.readiness().ready, "{:?}", runtime.readiness());

    for name in ["nope", "../iris", ".hidden", ""] {
        let err = runtime.load_model(name, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{name}: {err}");
    }
}

#[tokio::test]
async fn the_api_is_refused_outside_explicit_mode() {
    let repo = temp_repository("refused");
    add_version(&repo, "iris", 1, "iris_logreg");
    for mode in [ControlMode::None, ControlMode::Poll] {
        let runtime = runtime(&repo, mode);
        runtime.load_repository().await.unwrap();
        for err in [
            runtime.load_model("iris", None).await.unwrap_err(),
            runtime.unload_model("iris").await.unwrap_err(),
        ] {
            assert!(
                err.to_string()
                    .contains("start it with --model-control-mode explicit"),
                "{err}"
            );
        }
        assert_eq!(infer_iris(&runtime).await.0, 1);
    }
}

/// Tract, counting every inference of the models it loads.
struct Counting(Arc<AtomicUsize>);

struct CountingModel(Box<dyn LoadedModel>, Arc<AtomicUsize>);

impl LoadedModel for CountingModel {
    fn signature(&self) -> &ModelSignature {
        self.0.signature()
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.infer(inputs)
    }
}

impl Backend for Counting {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn platform(&self) -> &'static str {
        "onnx"
    }

    fn accepts(&self, dir: &Path, config: &ModelConfig) -> bool {
        TractBackend.accepts(dir, config)
    }

    fn load(&self, dir: &Path, config: &ModelConfig) -> Result<Box<dyn LoadedModel>, BackendError> {
        let inner = TractBackend.load(dir, config)?;
        Ok(Box::new(CountingModel(inner, Arc::clone(&self.0))))
    }
}

#[tokio::test]
async fn warmup_runs_on_every_instance_before_traffic() {
    let repo = temp_repository("warmup");
    add_version(&repo, "iris", 1, "iris_logreg");
    let rows: Vec<u8> = [5.1f32, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::create_dir_all(repo.join("iris/warmup")).unwrap();
    std::fs::write(repo.join("iris/warmup/x.bin"), &rows).unwrap();
    std::fs::write(
        repo.join("iris/config.toml"),
        r#"
        instance_count = 2
        [[warmup]]
        batch_size = 4
        count = 3
        data = "random"
        [[warmup]]
        batch_size = 2
        files = { X = "warmup/x.bin" }
        "#,
    )
    .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::new(Runtime::new(
        &repo,
        vec![Arc::new(Counting(Arc::clone(&runs)))],
    ));
    counted.load_repository().await.unwrap();
    assert_eq!(state(&counted, "iris", 1).0, ModelState::Ready);
    // (3 random + 1 sample) on each of 2 instances.
    assert_eq!(runs.load(Ordering::SeqCst), 8);

    // A sample of the wrong size fails the load with a reason that names it.
    std::fs::write(repo.join("iris/warmup/x.bin"), &rows[..12]).unwrap();
    let runtime = runtime(&repo, ControlMode::None);
    runtime.load_repository().await.unwrap();
    let (s, reason) = state(&runtime, "iris", 1);
    assert_eq!(s, ModelState::Unavailable);
    assert!(
        reason.contains("warmup 2") && reason.contains("x.bin"),
        "{reason}"
    );
}

#[tokio::test]
async fn readiness_follows_what_serves_not_old_errors() {
    let repo = temp_repository("ready");
    add_version(&repo, "iris", 1, "iris_logreg");
    std::fs::create_dir_all(repo.join("bad/1")).unwrap();
    std::fs::write(repo.join("bad/config.toml"), "max_batch_size = \"x\"").unwrap();

    // Not ready before start-up loading has even begun.
    let polled = runtime(&repo, ControlMode::Poll);
    assert!(!polled.readiness().ready);
    polled.load_repository().await.unwrap();
    assert!(!polled.readiness().ready);
    // The start-up failure still counts after a poll finds it unchanged.
    polled.poll().await.unwrap();
    let r = polled.readiness();
    assert!(!r.ready && r.not_ready[0].starts_with("bad:"), "{r:?}");

    // A failed override leaves no stale error behind for the next plain load.
    let explicit = runtime(&repo, ControlMode::Explicit);
    explicit.load_startup(&["iris".into()]).await.unwrap();
    let none = ModelConfig::parse_json(r#"{"version_policy": {"specific": [7]}}"#).unwrap();
    assert!(explicit.load_model("iris", Some(none)).await.is_err());
    assert_eq!(infer_iris(&explicit).await.0, 1);
    explicit.load_model("iris", None).await.unwrap();
    assert_eq!(
        state(&explicit, "iris", 1),
        (ModelState::Ready, String::new())
    );
}

/// A backend with a bug: it panics while loading.
struct Buggy;

impl Backend for Buggy {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn platform(&self) -> &'static str {
        "onnx"
    }

    fn accepts(&self, dir: &Path, config: &ModelConfig) -> bool {
        TractBackend.accepts(dir, config)
    }

    fn load(&self, _: &Path, _: &ModelConfig) -> Result<Box<dyn LoadedModel>, BackendError> {
        panic!("a bug in the backend")
    }
}

#[tokio::test]
async fn a_load_failure_maps_to_a_status_by_its_cause() {
    let repo = temp_repository("cause");
    add_version(&repo, "iris", 1, "iris_logreg");
    std::fs::create_dir_all(repo.join("broken/1")).unwrap();
    std::fs::write(repo.join("broken/1/model.onnx"), b"corrupt").unwrap();
    // The model's fault: a bad file is the caller's to fix (400).
    let runtime = runtime(&repo, ControlMode::Explicit);
    let err = runtime.load_model("broken", None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    // The server's fault: a crashed load (500), with what happened.
    let buggy = Arc::new(
        Runtime::new(&repo, vec![Arc::new(Buggy)]).with_control_mode(ControlMode::Explicit),
    );
    let err = buggy.load_model("iris", None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    assert!(err.to_string().contains("panicked while loading"), "{err}");
    assert_eq!(state(&buggy, "iris", 1).0, ModelState::Unavailable);
}
