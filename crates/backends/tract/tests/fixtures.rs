//! The tract backend against the committed fixtures and onnxruntime's expected outputs.

#[path = "../../../../tests/support/expected.rs"]
mod expected;

use expected::{Expected, as_f64, fixtures, number};
use inferd_backend_tract::TractBackend;
use inferd_core::{Backend, BackendError, DataType, ModelConfig};

fn check_model(name: &str) {
    let expected = Expected::of(name);
    let dir = fixtures().join(format!("models/{name}/1"));
    let model = TractBackend.load(&dir, &ModelConfig::default()).unwrap();
    let signature = model.signature().clone();
    for batch in [8, 1, 3] {
        let inputs = signature
            .inputs
            .iter()
            .map(|s| expected.inputs[&s.name].rows(batch))
            .collect();
        let outputs = model.infer(inputs).unwrap();
        assert_eq!(outputs.len(), signature.outputs.len());
        for (spec, got) in signature.outputs.iter().zip(&outputs) {
            let want = &expected.outputs[&spec.name];
            assert_eq!(
                got.datatype().as_str(),
                want.datatype,
                "{name}.{}",
                spec.name
            );
            assert_eq!(got.shape()[0], batch, "{name}.{}", spec.name);
            assert_eq!(got.shape()[1..], want.shape[1..], "{name}.{}", spec.name);
            let want: Vec<f64> = want.data[..got.data().len()].iter().map(number).collect();
            for (i, (g, w)) in as_f64(got).iter().zip(&want).enumerate() {
                // 1e-5, relative beyond magnitude 10: one f32 ulp at 217 is already 1.5e-5.
                assert!(
                    (g - w).abs() <= 1e-5 + 1e-6 * w.abs(),
                    "{name}.{}[{i}] batch {batch}: {g} != {w}",
                    spec.name
                );
            }
        }
    }
}

/// Every model in tests/fixtures/models, so a new fixture is checked without a new test.
#[test]
fn every_fixture_matches_onnxruntime() {
    let names = expected::models();
    assert!(names.len() >= 11, "{names:?}");
    for name in names {
        check_model(&name);
    }
}

#[test]
fn signature_is_read_from_the_graph() {
    let model = TractBackend
        .load(
            &fixtures().join("models/iris_logreg/1"),
            &ModelConfig::default(),
        )
        .unwrap();
    let s = model.signature();
    assert_eq!(s.inputs.len(), 1);
    assert_eq!(
        (s.inputs[0].name.as_str(), s.inputs[0].datatype),
        ("X", DataType::F32)
    );
    assert_eq!(s.inputs[0].dims, [-1, 4]);
    let outputs: Vec<_> = s
        .outputs
        .iter()
        .map(|o| (o.name.as_str(), o.datatype, o.dims.clone()))
        .collect();
    assert_eq!(
        outputs,
        [
            ("label", DataType::I64, vec![-1]),
            ("probabilities", DataType::F32, vec![-1, 3])
        ]
    );
}

#[test]
fn missing_operator_is_named() {
    let dir = fixtures().join("broken/unsupported_op/1");
    let err = TractBackend
        .load(&dir, &ModelConfig::default())
        .err()
        .unwrap();
    assert!(
        matches!(err, BackendError::UnsupportedOperators { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("Frobnicate (com.example)") && msg.contains("unsupported_op"),
        "{msg}"
    );
}

#[test]
fn garbage_file_is_a_load_error() {
    let dir = std::env::temp_dir().join(format!("inferd-garbage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.onnx"), b"this is not protobuf").unwrap();
    let err = TractBackend
        .load(&dir, &ModelConfig::default())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("not a readable ONNX model"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
