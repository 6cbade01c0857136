//! The ONNX Runtime backend on every fixture: the outputs onnxruntime's Python API produced, and
//! the same outputs as the tract backend (within 1e-5). Needs the library: `scripts/test` fetches
//! it; elsewhere set INFERD_ONNXRUNTIME_LIB or run `python3 scripts/get_onnxruntime.py`.

#[path = "../../../../tests/support/expected.rs"]
mod expected;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use expected::{Expected, as_f64, fixtures, number};
use inferd_backend_onnxruntime::OnnxRuntimeBackend;
use inferd_backend_tract::TractBackend;
use inferd_core::{Backend, ModelConfig, Tensor};

fn backend() -> Arc<OnnxRuntimeBackend> {
    static BACKEND: OnceLock<Arc<OnnxRuntimeBackend>> = OnceLock::new();
    Arc::clone(BACKEND.get_or_init(|| {
        let library = std::env::var_os("INFERD_ONNXRUNTIME_LIB")
            .map(PathBuf::from)
            .unwrap_or_else(OnnxRuntimeBackend::default_library);
        assert!(
            library.is_file(),
            "no ONNX Runtime library at {}: run `python3 scripts/get_onnxruntime.py` \
             (scripts/test does) or set INFERD_ONNXRUNTIME_LIB",
            library.display()
        );
        Arc::new(OnnxRuntimeBackend::new(library))
    }))
}

fn close(name: &str, what: &str, got: &Tensor, want: &[f64]) {
    for (i, (g, w)) in as_f64(got).iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 + 1e-6 * w.abs() || (g.is_nan() && w.is_nan()),
            "{name}.{what}[{i}]: {g} != {w}"
        );
    }
}

#[test]
fn every_fixture_matches_onnxruntime_python_and_tract() {
    let mut checked = 0;
    for name in expected::models() {
        let dir = fixtures().join(format!("models/{name}/1"));
        let ort = match backend().load(&dir, &ModelConfig::default()) {
            Ok(model) => model,
            // ZipMap outputs are sequences of maps, which the protocol cannot carry; tract
            // rewrites them to tensors, ONNX Runtime is told why it cannot serve them.
            Err(e) if name.contains("zipmap") => {
                assert!(e.to_string().contains("zipmap"), "{name}: {e}");
                continue;
            }
            Err(e) => panic!("{name}: {e}"),
        };
        let tract = TractBackend.load(&dir, &ModelConfig::default()).unwrap();
        assert_eq!(ort.signature().inputs.len(), tract.signature().inputs.len());
        let expected = Expected::of(&name);
        for batch in [8, 1] {
            let inputs: Vec<Tensor> = ort
                .signature()
                .inputs
                .iter()
                .map(|s| expected.inputs[&s.name].rows(batch))
                .collect();
            let from_ort = ort.infer(inputs.clone()).unwrap();
            let from_tract = tract.infer(inputs).unwrap();
            for ((spec, got), tract_out) in ort
                .signature()
                .outputs
                .iter()
                .zip(&from_ort)
                .zip(&from_tract)
            {
                let want = &expected.outputs[&spec.name];
                assert_eq!(got.shape()[0], batch, "{name}.{}", spec.name);
                let want: Vec<f64> = want.data[..got.data().len()].iter().map(number).collect();
                close(&name, &spec.name, got, &want);
                close(
                    &name,
                    &format!("{} vs tract", spec.name),
                    got,
                    &as_f64(tract_out),
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 19, "{checked} fixtures checked");
}

#[test]
fn a_missing_library_is_a_clear_load_error() {
    let backend = OnnxRuntimeBackend::new("/nonexistent/libonnxruntime.so");
    let dir = fixtures().join("models/iris_logreg/1");
    let err = backend
        .load(&dir, &ModelConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("/nonexistent/libonnxruntime.so") && err.contains("get_onnxruntime.py"),
        "{err}"
    );
}

#[test]
fn unknown_providers_and_levels_are_refused_by_name() {
    let dir = fixtures().join("models/iris_logreg/1");
    for (key, value, needle) in [
        (
            "execution_providers",
            "tpu",
            "unknown execution provider 'tpu'",
        ),
        (
            "graph_optimization_level",
            "max",
            "graph_optimization_level 'max'",
        ),
        (
            "intra_op_threads",
            "0",
            "intra_op_threads must be a positive integer",
        ),
    ] {
        let mut config = ModelConfig::default();
        config.parameters.insert(key.into(), toml_string(value));
        let err = backend().load(&dir, &config).err().unwrap().to_string();
        assert!(err.contains(needle), "{err}");
    }
    // CUDA is not in the CPU library: a warning, and the model runs on the CPU.
    let mut config = ModelConfig::default();
    config
        .parameters
        .insert("execution_providers".into(), toml_string("cuda:0,cpu"));
    assert!(backend().load(&dir, &config).is_ok());
}

fn toml_string(s: &str) -> toml::Value {
    toml::Value::String(s.to_string())
}
