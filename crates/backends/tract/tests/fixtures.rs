//! The tract backend against the committed fixtures and onnxruntime's expected outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use inferd_backend_tract::TractBackend;
use inferd_core::{Backend, BackendError, DataType, ModelConfig, Tensor, TensorData};
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    inputs: BTreeMap<String, JsonTensor>,
    outputs: BTreeMap<String, JsonTensor>,
}

#[derive(Deserialize)]
struct JsonTensor {
    datatype: String,
    shape: Vec<usize>,
    /// Numbers, strings for BYTES; JSON has no NaN, so missing values are null.
    data: Vec<serde_json::Value>,
}

fn number(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

impl JsonTensor {
    /// The first `rows` rows as a tensor of the declared datatype.
    fn rows(&self, rows: usize) -> Tensor {
        let mut shape = self.shape.clone();
        let per_row: usize = shape[1..].iter().product();
        shape[0] = rows;
        let values = &self.data[..rows * per_row];
        let data = values.iter().map(number);
        let data = match self.datatype.parse::<DataType>().unwrap() {
            DataType::F32 => TensorData::F32(data.map(|v| v as f32).collect()),
            DataType::I64 => TensorData::I64(data.map(|v| v as i64).collect()),
            DataType::Bytes => TensorData::Bytes(
                values
                    .iter()
                    .map(|v| v.as_str().unwrap().as_bytes().to_vec())
                    .collect(),
            ),
            other => panic!("fixture datatype {other} not handled"),
        };
        Tensor::new(shape, data).unwrap()
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../tests/fixtures")
}

fn as_f64(t: &Tensor) -> Vec<f64> {
    match t.data() {
        TensorData::F32(v) => v.iter().map(|x| *x as f64).collect(),
        TensorData::I64(v) => v.iter().map(|x| *x as f64).collect(),
        other => panic!("unexpected output {:?}", other.datatype()),
    }
}

fn check_model(name: &str) {
    let expected: Expected = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(format!("expected/{name}.json"))).unwrap(),
    )
    .unwrap();
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
    let mut names: Vec<String> = std::fs::read_dir(fixtures().join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
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
