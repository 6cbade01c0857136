//! The scheduler: batching correctness on every fixture model, queue limits, deadlines,
//! priorities, the batch sizes it forms, and failures (panics included) confined to their batch.
//! A wrapper makes a real model slow so that a queue builds up deterministically behind the
//! first request.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use inferd_backend_tract::TractBackend;
use inferd_core::{
    Backend, BackendError, DynamicBatching, LoadedModel, ModelConfig, ModelSignature, NamedTensor,
    Tensor, TensorData,
};

use super::BatchOps;
use crate::{
    ErrorKind, InferRequest, InferResponse, ModelSpec, Parameter, Protocol, RequestContext,
    RuntimeError, ServedModel,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

impl ServedModel {
    /// A request with a fresh context.
    async fn call(&self, request: InferRequest) -> Result<InferResponse, RuntimeError> {
        self.infer(request, &RequestContext::new(Protocol::Grpc))
            .await
    }
}

/// First input value of each row, per execution, in execution order.
type Ran = Arc<Mutex<Vec<Vec<f32>>>>;

/// A real model that takes `delay` per execution and records the first input value of each
/// request row it ran (tags to check order and what never ran).
struct Slow {
    inner: Box<dyn LoadedModel>,
    delay: Duration,
    ran: Ran,
}

impl LoadedModel for Slow {
    fn signature(&self) -> &ModelSignature {
        self.inner.signature()
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        if let TensorData::F32(v) = inputs[0].data() {
            let per_row = inputs[0].shape()[1..].iter().product::<usize>().max(1);
            self.ran
                .lock()
                .unwrap()
                .push(v.chunks(per_row).map(|r| r[0]).collect());
        }
        std::thread::sleep(self.delay);
        self.inner.infer(inputs)
    }
}

fn serve(name: &str, config: ModelConfig, delay: Duration) -> (Arc<ServedModel>, Ran) {
    serve_with(name, config, delay, BatchOps::default())
}

fn serve_with(
    name: &str,
    config: ModelConfig,
    delay: Duration,
    ops: BatchOps,
) -> (Arc<ServedModel>, Ran) {
    let dir = fixtures().join(format!("models/{name}/1"));
    let inner = TractBackend.load(&dir, &config).unwrap();
    let spec = ModelSpec::derive(name, 1, ("tract", "onnx"), &config, inner.signature()).unwrap();
    let ran = Arc::new(Mutex::new(Vec::new()));
    let model = Slow {
        inner,
        delay,
        ran: Arc::clone(&ran),
    };
    (
        Arc::new(
            ServedModel::with_ops(spec, Arc::new(model), &dir, ops, Default::default()).unwrap(),
        ),
        ran,
    )
}

fn batching(f: impl FnOnce(&mut DynamicBatching)) -> ModelConfig {
    let mut b = DynamicBatching::default();
    f(&mut b);
    ModelConfig {
        dynamic_batching: Some(b),
        ..Default::default()
    }
}

/// One row of `name`'s fixture inputs, row `i` of the expected file, tagged when FP32.
fn row_request(name: &str, i: usize, tag: Option<f32>) -> InferRequest {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(format!("expected/{name}.json"))).unwrap(),
    )
    .unwrap();
    let mut inputs = Vec::new();
    for (input, t) in expected["inputs"].as_object().unwrap() {
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let per_row: usize = shape[1..].iter().product();
        let values = &t["data"].as_array().unwrap()[i * per_row..(i + 1) * per_row];
        let data = match t["datatype"].as_str().unwrap() {
            "FP32" => {
                let mut v: Vec<f32> = values
                    .iter()
                    .map(|v| v.as_f64().unwrap_or(f64::NAN) as f32)
                    .collect();
                if let Some(tag) = tag {
                    v[0] = tag;
                }
                TensorData::F32(v)
            }
            "INT64" => TensorData::I64(values.iter().map(|v| v.as_i64().unwrap()).collect()),
            "BYTES" => TensorData::Bytes(
                values
                    .iter()
                    .map(|v| v.as_str().unwrap().as_bytes().to_vec())
                    .collect(),
            ),
            other => panic!("{other}"),
        };
        let tensor = Tensor::new([vec![1], shape[1..].to_vec()].concat(), data).unwrap();
        inputs.push(NamedTensor {
            name: input.clone(),
            tensor,
        });
    }
    InferRequest {
        inputs,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_results_equal_unbatched_for_every_fixture() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures().join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let (model, _) = serve(&name, ModelConfig::default(), Duration::from_millis(30));
        if model.spec().max_batch_size == 0 {
            continue;
        }
        // One at a time: each runs alone.
        let mut alone = Vec::new();
        for i in 0..8 {
            alone.push(
                model
                    .call(row_request(&name, i, None))
                    .await
                    .unwrap()
                    .outputs,
            );
        }
        // All at once: the first runs while the other seven queue and run as one batch.
        let together = futures_join((0..8).map(|i| {
            let model = Arc::clone(&model);
            let request = row_request(&name, i, None);
            tokio::spawn(async move { model.call(request).await.unwrap().outputs })
        }))
        .await;
        assert_same(&name, &together, &alone);
        let sizes = model.batch_sizes();
        assert!(
            sizes.keys().any(|rows| *rows > 1),
            "{name}: no batch formed: {sizes:?}"
        );
    }
}

/// Element for element: integers and strings exactly, floats within 1e-6 relative. Exact float
/// equality is not a property of the backend: tract's matrix kernels tile differently per batch
/// size, so a batched row can differ from the same row alone in the last bit.
fn assert_same(name: &str, batched: &[Vec<NamedTensor>], alone: &[Vec<NamedTensor>]) {
    assert_eq!(batched.len(), alone.len());
    for (row, (b, a)) in batched.iter().zip(alone).enumerate() {
        for (b, a) in b.iter().zip(a) {
            assert_eq!(
                (&b.name, b.tensor.shape()),
                (&a.name, a.tensor.shape()),
                "{name} row {row}"
            );
            match (b.tensor.data(), a.tensor.data()) {
                (TensorData::F32(x), TensorData::F32(y)) => {
                    for (x, y) in x.iter().zip(y) {
                        let close =
                            (x - y).abs() <= 1e-6 * y.abs().max(1e-3) || (x.is_nan() && y.is_nan());
                        assert!(
                            close,
                            "{name} row {row} {}: batched {x} vs alone {y}",
                            b.name
                        );
                    }
                }
                (x, y) => assert_eq!(x, y, "{name} row {row} {}", b.name),
            }
        }
    }
}

async fn futures_join<T: Send + 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let handles: Vec<_> = tasks.collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_reach_max_batch_size_under_load() {
    let config = ModelConfig {
        max_batch_size: Some(4),
        ..Default::default()
    };
    let (model, _) = serve("mlp", config, Duration::from_millis(40));
    let tasks: Vec<_> = (0..13)
        .map(|i| {
            let model = Arc::clone(&model);
            tokio::spawn(async move { model.call(row_request("mlp", i % 8, None)).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let sizes = model.batch_sizes();
    assert!(sizes.get(&4).copied().unwrap_or(0) >= 2, "{sizes:?}");
    assert!(sizes.keys().all(|rows| *rows <= 4), "{sizes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_rejects() {
    let (model, _) = serve(
        "mlp",
        batching(|b| b.max_queue_size = 2),
        Duration::from_millis(300),
    );
    let busy = {
        let model = Arc::clone(&model);
        tokio::spawn(async move { model.call(row_request("mlp", 0, None)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await; // the first one is running
    let queued: Vec<_> = (1..3)
        .map(|i| {
            let model = Arc::clone(&model);
            tokio::spawn(async move { model.call(row_request("mlp", i, None)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = model.call(row_request("mlp", 3, None)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("max_queue_size"), "{err}");
    assert!(busy.await.unwrap().is_ok());
    for q in queued {
        assert!(q.await.unwrap().is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_deadline_is_answered_and_never_run() {
    let (model, ran) = serve("mlp", ModelConfig::default(), Duration::from_millis(200));
    let busy = {
        let model = Arc::clone(&model);
        tokio::spawn(async move { model.call(row_request("mlp", 0, Some(1000.0))).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut late = row_request("mlp", 1, Some(2000.0));
    late.parameters
        .insert("timeout".into(), Parameter::Uint64(20_000));
    let err = model.call(late).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.to_string().contains("timed out") && err.to_string().contains("not run"),
        "{err}"
    );
    busy.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ran: Vec<f32> = ran.lock().unwrap().iter().flatten().copied().collect();
    assert_eq!(ran, [1000.0], "the timed-out request must not execute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_order_holds_under_a_saturated_queue() {
    let config = batching(|b| {
        b.enabled = false;
        b.priority_levels = 2;
        b.default_priority_level = 2;
    });
    let (model, ran) = serve("mlp", config, Duration::from_millis(40));
    let submit = |tag: f32, priority: u64| {
        let model = Arc::clone(&model);
        let mut request = row_request("mlp", 0, Some(tag));
        request
            .parameters
            .insert("priority".into(), Parameter::Uint64(priority));
        tokio::spawn(async move { model.call(request).await.unwrap() })
    };
    let first = submit(0.0, 2);
    tokio::time::sleep(Duration::from_millis(10)).await; // the first one is running
    let mut tasks = vec![first];
    for (tag, priority) in [(1.0, 2), (2.0, 2), (3.0, 1), (4.0, 0), (5.0, 1)] {
        tasks.push(submit(tag, priority));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let order: Vec<f32> = ran.lock().unwrap().iter().flatten().copied().collect();
    // Level 1 first in arrival order, then the default level (priority 0 means default).
    assert_eq!(order, [0.0, 3.0, 5.0, 1.0, 2.0, 4.0]);
    let mut bad = row_request("mlp", 0, None);
    bad.parameters
        .insert("priority".into(), Parameter::Uint64(3));
    assert!(
        model
            .call(bad)
            .await
            .unwrap_err()
            .to_string()
            .contains("priority 3 is beyond the 2 priority levels")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_request_is_removed_from_the_queue() {
    let (model, ran) = serve("mlp", ModelConfig::default(), Duration::from_millis(150));
    let busy = {
        let model = Arc::clone(&model);
        tokio::spawn(async move { model.call(row_request("mlp", 0, Some(1.0))).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cancelled = {
        let model = Arc::clone(&model);
        tokio::spawn(async move { model.call(row_request("mlp", 1, Some(2.0))).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    cancelled.abort(); // what a dropped HTTP connection or cancelled gRPC call does
    busy.await.unwrap().unwrap();
    model.call(row_request("mlp", 2, Some(3.0))).await.unwrap();
    let ran: Vec<f32> = ran.lock().unwrap().iter().flatten().copied().collect();
    assert_eq!(ran, [1.0, 3.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_count_every_outcome_once() {
    use crate::FailureReason;
    let config = batching(|b| {
        b.max_queue_size = 1;
        b.enabled = false;
    });
    let (model, _) = serve("mlp", config, Duration::from_millis(100));
    // 3 successes, one at a time.
    for i in 0..3 {
        model.call(row_request("mlp", i, None)).await.unwrap();
    }
    // 1 invalid request (OTHER).
    let mut bad = row_request("mlp", 0, None);
    bad.parameters
        .insert("priority".into(), Parameter::Uint64(9));
    model.call(bad).await.unwrap_err();
    // While one runs: one queued that times out, then one rejected (queue of 1 is full).
    let spawn = |request: InferRequest| {
        let model = Arc::clone(&model);
        tokio::spawn(async move { model.call(request).await })
    };
    let busy = spawn(row_request("mlp", 0, None));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut late = row_request("mlp", 1, None);
    late.parameters
        .insert("timeout".into(), Parameter::Uint64(30_000));
    let late = spawn(late);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(model.stats().pending, 1);
    model.call(row_request("mlp", 2, None)).await.unwrap_err();
    busy.await.unwrap().unwrap();
    late.await.unwrap().unwrap_err();
    // One cancelled while queued behind a running one.
    let busy = spawn(row_request("mlp", 0, None));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let gone = spawn(row_request("mlp", 1, None));
    tokio::time::sleep(Duration::from_millis(10)).await;
    gone.abort();
    busy.await.unwrap().unwrap();

    let s = model.stats();
    assert_eq!(
        (s.success.count, s.inference_count, s.execution_count),
        (5, 5, 5)
    );
    let failures: Vec<(FailureReason, u64)> = s.failures.clone();
    assert_eq!(
        failures,
        [
            (FailureReason::Rejected, 1),
            (FailureReason::Canceled, 1),
            (FailureReason::Backend, 0),
            (FailureReason::Timeout, 1),
            (FailureReason::Other, 1),
        ]
    );
    assert_eq!(s.fail.count, 4);
    assert_eq!(s.request_seconds.count, 5);
    assert_eq!(s.batch_rows.count, 5);
    assert_eq!(s.batches.len(), 1);
    assert_eq!(s.batches[0].batch_size, 1);
    assert_eq!(s.batches[0].compute_infer.count, 5);
    // Each request's phases fit in its total; with a 100 ms model they are nearly all of it.
    let parts = s.queue.ns + s.compute_input.ns + s.compute_infer.ns + s.compute_output.ns;
    assert!(parts <= s.success.ns, "{parts} > {}", s.success.ns);
    assert!(
        parts as f64 >= 0.95 * s.success.ns as f64,
        "{parts} vs {}",
        s.success.ns
    );
    assert!(s.last_inference_ms > 0);
}

/// Merging and splitting that panic (as a bug in them would), to check that a panic anywhere in
/// a batch's path fails that batch only.
fn panicking_merge(_: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>, String> {
    panic!("injected: merge")
}

fn panicking_split(_: Vec<Tensor>, _: &[usize]) -> Result<Vec<Vec<Tensor>>, String> {
    panic!("injected: split")
}

/// Fires `n` requests at once on a model busy with a first one, so the rest form a batch.
async fn burst(model: &Arc<ServedModel>, n: usize) -> Vec<Result<InferResponse, RuntimeError>> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let model = Arc::clone(model);
            tokio::spawn(async move { model.call(row_request("mlp", i % 8, None)).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_merge_or_split_fails_only_its_batch() {
    for ops in [
        BatchOps {
            merge: panicking_merge,
            ..BatchOps::default()
        },
        BatchOps {
            split: panicking_split,
            ..BatchOps::default()
        },
    ] {
        let (model, _) = serve_with(
            "mlp",
            ModelConfig::default(),
            Duration::from_millis(30),
            ops,
        );
        let first = {
            let model = Arc::clone(&model);
            tokio::spawn(async move { model.call(row_request("mlp", 0, None)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await; // running: the rest queue
        let mut results = burst(&model, 5).await;
        results.push(first.await.unwrap());
        let failed: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
            .collect();
        // The first request ran alone (no merge or split); the batch behind it crashed.
        assert_eq!(failed.len(), 5, "{failed:?}");
        assert!(
            failed.iter().all(|e| e.contains("the batch crashed")),
            "{failed:?}"
        );
        // The instance is free again and serves: lone requests need no merge or split.
        for i in 0..3 {
            model.call(row_request("mlp", i, None)).await.unwrap();
        }
        assert_eq!(model.stats().pending, 0);
    }
}

/// A backend that panics on every call whose first value is negative.
struct Fragile {
    inner: Box<dyn LoadedModel>,
    calls: AtomicUsize,
}

impl LoadedModel for Fragile {
    fn signature(&self) -> &ModelSignature {
        self.inner.signature()
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if inputs[0].to_slice::<f32>().is_some_and(|v| v[0] < 0.0) {
            panic!("injected: backend");
        }
        self.inner.infer(inputs)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_backend_leaves_the_instance_serving() {
    let dir = fixtures().join("models/mlp/1");
    let config = ModelConfig::default();
    let inner = TractBackend.load(&dir, &config).unwrap();
    let spec = ModelSpec::derive("mlp", 1, ("tract", "onnx"), &config, inner.signature()).unwrap();
    let model = Arc::new(Fragile {
        inner,
        calls: AtomicUsize::new(0),
    });
    let served = ServedModel::new(spec, model.clone(), &dir, Default::default()).unwrap();
    // Quick executions run inline on this thread once the model is known to be fast; panics
    // there must be caught as well as on the instance threads.
    for round in 0..20 {
        let err = served
            .call(row_request("mlp", 0, Some(-1.0)))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("the batch crashed"),
            "{round}: {err}"
        );
        served.call(row_request("mlp", 1, Some(1.0))).await.unwrap();
    }
    assert_eq!(model.calls.load(Ordering::Relaxed), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_models_run_on_the_callers_thread() {
    let dir = fixtures().join("models/iris_logreg/1");
    let config = ModelConfig::default();
    let model: Arc<dyn LoadedModel> = Arc::from(TractBackend.load(&dir, &config).unwrap());
    let spec = ModelSpec::derive("iris", 1, ("tract", "onnx"), &config, model.signature()).unwrap();
    let served = ServedModel::new(spec, model, &dir, Default::default()).unwrap();
    let request = || InferRequest {
        inputs: vec![NamedTensor {
            name: "X".into(),
            tensor: Tensor::new(vec![1, 4], TensorData::F32(vec![5.1, 3.5, 1.4, 0.2])).unwrap(),
        }],
        ..Default::default()
    };
    // The first execution is timed on an instance thread; later ones are known to be quick.
    served.call(request()).await.unwrap();
    let me = std::thread::current().id();
    let threads = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..5 {
        served.call(request()).await.unwrap();
        threads.lock().unwrap().push(std::thread::current().id());
    }
    assert!(threads.lock().unwrap().iter().all(|t| *t == me));
    assert_eq!(served.stats().execution_count, 6);
}
