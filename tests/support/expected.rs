//! Test support shared by the backends' fixture tests (included with `#[path]`): the fixture
//! directory and onnxruntime's expected inputs and outputs in tests/fixtures/expected/.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use inferd_core::{DataType, Tensor, TensorData};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Expected {
    pub inputs: BTreeMap<String, JsonTensor>,
    pub outputs: BTreeMap<String, JsonTensor>,
}

#[derive(Deserialize)]
pub struct JsonTensor {
    pub datatype: String,
    pub shape: Vec<usize>,
    /// Numbers, strings for BYTES; JSON has no NaN, so missing values are null.
    pub data: Vec<serde_json::Value>,
}

pub fn number(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

impl JsonTensor {
    /// The first `rows` rows as a tensor of the declared datatype.
    pub fn rows(&self, rows: usize) -> Tensor {
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

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../tests/fixtures")
}

pub fn as_f64(t: &Tensor) -> Vec<f64> {
    match t.data() {
        TensorData::F32(v) => v.iter().map(|x| *x as f64).collect(),
        TensorData::I64(v) => v.iter().map(|x| *x as f64).collect(),
        other => panic!("unexpected output {:?}", other.datatype()),
    }
}

impl Expected {
    pub fn of(name: &str) -> Expected {
        let path = fixtures().join(format!("expected/{name}.json"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }
}

/// Every fixture model's name, sorted.
pub fn models() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures().join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
