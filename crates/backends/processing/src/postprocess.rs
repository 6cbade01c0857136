//! `backend = "postprocess"`: turns a model's scores into what callers want. Input `scores`
//! FP32 [batch, classes]; `[parameters]`:
//! - `op = "softmax" | "sigmoid"`: output `probabilities` FP32 [batch, classes];
//! - `op = "argmax"`: `label` INT64 [batch] (and `label_name` BYTES [batch] with `labels`);
//! - `op = "topk"`, `k`: `top_indices` INT64 [batch, k], `top_scores` FP32 [batch, k] (and
//!   `top_labels` BYTES [batch, k] with `labels`), best first, ties to the lower index;
//! - `op = "threshold"`, `threshold`: `predictions` INT64 [batch, classes], 1 where the score
//!   reaches it (multi-label).
//!
//! `activation = "softmax" | "sigmoid" | "none"` (default none) applies to the scores before
//! argmax, topk and threshold; `labels = "labels.txt"` names a file of the version directory,
//! one label per line, line i for class i.

use std::path::Path;

use inferd_core::{
    Backend, BackendError, DataType, LoadedModel, ModelConfig, ModelSignature, Tensor, TensorData,
    TensorSpec,
};

pub struct PostprocessBackend;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Softmax,
    Sigmoid,
    Argmax,
    TopK(usize),
    Threshold(f32),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Activation {
    None,
    Softmax,
    Sigmoid,
}

impl Backend for PostprocessBackend {
    fn name(&self) -> &'static str {
        "postprocess"
    }

    fn platform(&self) -> &'static str {
        "postprocess"
    }

    /// Only when config.toml asks for it: it has no model file to recognise.
    fn accepts(&self, _version_dir: &Path, _config: &ModelConfig) -> bool {
        false
    }

    fn load(
        &self,
        version_dir: &Path,
        config: &ModelConfig,
    ) -> Result<Box<dyn LoadedModel>, BackendError> {
        let fail = |reason: String| BackendError::Load {
            path: version_dir.to_path_buf(),
            reason,
        };
        let number = |key: &str| -> Result<Option<f64>, BackendError> {
            config
                .parameter(key)
                .map(|v| {
                    v.parse::<f64>()
                        .map_err(|_| fail(format!("parameter {key} = {v}: a number")))
                })
                .transpose()
        };
        let op = match config.parameter("op").as_deref() {
            Some("softmax") => Op::Softmax,
            Some("sigmoid") => Op::Sigmoid,
            Some("argmax") => Op::Argmax,
            Some("topk") => match number("k")? {
                Some(k) if k >= 1.0 && k.fract() == 0.0 => Op::TopK(k as usize),
                _ => {
                    return Err(fail(
                        "op = \"topk\" needs k, a whole number of at least 1".into(),
                    ));
                }
            },
            Some("threshold") => match number("threshold")? {
                Some(t) => Op::Threshold(t as f32),
                None => return Err(fail("op = \"threshold\" needs threshold".into())),
            },
            Some(other) => {
                return Err(fail(format!(
                    "op = \"{other}\": softmax, sigmoid, argmax, topk or threshold"
                )));
            }
            None => return Err(fail("[parameters] op is required".into())),
        };
        let activation = match config.parameter("activation").as_deref() {
            None | Some("none") => Activation::None,
            Some("softmax") => Activation::Softmax,
            Some("sigmoid") => Activation::Sigmoid,
            Some(other) => {
                return Err(fail(format!(
                    "activation = \"{other}\": softmax, sigmoid or none"
                )));
            }
        };
        let labels = match config.parameter("labels") {
            Some(file) => Some(inferd_core::read_labels(&version_dir.join(file)).map_err(fail)?),
            None => None,
        };
        let spec = TensorSpec::new;
        let mut outputs = match op {
            Op::Softmax | Op::Sigmoid => vec![spec("probabilities", DataType::F32, vec![-1, -1])],
            Op::Argmax => vec![spec("label", DataType::I64, vec![-1])],
            Op::TopK(k) => vec![
                spec("top_indices", DataType::I64, vec![-1, k as i64]),
                spec("top_scores", DataType::F32, vec![-1, k as i64]),
            ],
            Op::Threshold(_) => vec![spec("predictions", DataType::I64, vec![-1, -1])],
        };
        if labels.is_some() {
            match op {
                Op::Argmax => outputs.push(spec("label_name", DataType::Bytes, vec![-1])),
                Op::TopK(k) => {
                    outputs.push(spec("top_labels", DataType::Bytes, vec![-1, k as i64]))
                }
                _ => {}
            }
        }
        Ok(Box::new(Postprocess {
            op,
            activation,
            labels,
            signature: ModelSignature {
                inputs: vec![spec("scores", DataType::F32, vec![-1, -1])],
                outputs,
            },
        }))
    }
}

struct Postprocess {
    op: Op,
    activation: Activation,
    labels: Option<Vec<String>>,
    signature: ModelSignature,
}

fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

fn sigmoid(row: &mut [f32]) {
    for v in row.iter_mut() {
        *v = 1.0 / (1.0 + (-*v).exp());
    }
}

/// The `k` best indices of `row`, best first; ties to the lower index; NaN last.
fn top_k(row: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (row[a], row[b]);
        y.partial_cmp(&x)
            .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()))
            .then(a.cmp(&b))
    });
    order.truncate(k);
    order
}

impl Postprocess {
    fn label(&self, class: usize) -> Vec<u8> {
        self.labels.as_ref().and_then(|l| l.get(class)).map_or_else(
            || class.to_string().into_bytes(),
            |l| l.clone().into_bytes(),
        )
    }

    fn check_classes(&self, classes: usize) -> Result<(), String> {
        if let Op::TopK(k) = self.op
            && k > classes
        {
            return Err(format!(
                "k is {k} but the scores have only {classes} classes"
            ));
        }
        if let Some(labels) = &self.labels
            && labels.len() < classes
        {
            return Err(format!(
                "the labels file has {} lines but the scores have {classes} classes",
                labels.len()
            ));
        }
        Ok(())
    }
}

impl LoadedModel for Postprocess {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), String> {
        let classes = inputs
            .first()
            .and_then(|t| t.shape().get(1))
            .copied()
            .unwrap_or(0);
        self.check_classes(classes)
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let fail = BackendError::Inference;
        let input = inputs.first().ok_or_else(|| fail("no input".into()))?;
        let (rows, classes) = match input.shape() {
            [rows, classes] => (*rows, *classes),
            other => {
                return Err(fail(format!(
                    "scores must be [batch, classes], not {other:?}"
                )));
            }
        };
        self.check_classes(classes).map_err(fail)?;
        let Some(mut scores) = input.to_slice::<f32>().map(|s| s.to_vec()) else {
            return Err(fail("scores must be FP32".into()));
        };
        let activation = match self.op {
            Op::Softmax => Activation::Softmax,
            Op::Sigmoid => Activation::Sigmoid,
            _ => self.activation,
        };
        if classes > 0 {
            for row in scores.chunks_mut(classes) {
                match activation {
                    Activation::Softmax => softmax(row),
                    Activation::Sigmoid => sigmoid(row),
                    Activation::None => {}
                }
            }
        }
        let tensor = |shape: Vec<usize>, data| Tensor::new(shape, data).map_err(fail);
        let rows_of = |data: &[f32]| -> Vec<Vec<f32>> {
            if classes == 0 {
                vec![Vec::new(); rows]
            } else {
                data.chunks(classes).map(<[f32]>::to_vec).collect()
            }
        };
        match self.op {
            Op::Softmax | Op::Sigmoid => {
                Ok(vec![tensor(vec![rows, classes], TensorData::F32(scores))?])
            }
            Op::Threshold(t) => {
                let v = scores.iter().map(|&s| i64::from(s >= t)).collect();
                Ok(vec![tensor(vec![rows, classes], TensorData::I64(v))?])
            }
            Op::Argmax => {
                let best: Vec<usize> = rows_of(&scores)
                    .iter()
                    .map(|r| top_k(r, 1).first().copied().unwrap_or(0))
                    .collect();
                let mut out = vec![tensor(
                    vec![rows],
                    TensorData::I64(best.iter().map(|&b| b as i64).collect()),
                )?];
                if self.labels.is_some() {
                    out.push(tensor(
                        vec![rows],
                        TensorData::Bytes(best.iter().map(|&b| self.label(b)).collect()),
                    )?);
                }
                Ok(out)
            }
            Op::TopK(k) => {
                let (mut idx, mut val, mut names) = (Vec::new(), Vec::new(), Vec::new());
                for row in rows_of(&scores) {
                    for i in top_k(&row, k) {
                        idx.push(i as i64);
                        val.push(row[i]);
                        names.push(self.label(i));
                    }
                }
                let mut out = vec![
                    tensor(vec![rows, k], TensorData::I64(idx))?,
                    tensor(vec![rows, k], TensorData::F32(val))?,
                ];
                if self.labels.is_some() {
                    out.push(tensor(vec![rows, k], TensorData::Bytes(names))?);
                }
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(params: &str, labels: Option<&str>) -> Result<Box<dyn LoadedModel>, BackendError> {
        let dir = std::env::temp_dir().join(format!("inferd-post-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(l) = labels {
            std::fs::write(dir.join("labels.txt"), l).unwrap();
        }
        let config: ModelConfig = toml::from_str(&format!("[parameters]\n{params}")).unwrap();
        PostprocessBackend.load(&dir, &config)
    }

    fn scores(rows: &[[f32; 3]]) -> Tensor {
        Tensor::new(
            vec![rows.len(), 3],
            TensorData::F32(rows.iter().flatten().copied().collect()),
        )
        .unwrap()
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let m = model("op = \"softmax\"", None).unwrap();
        let out = m
            .infer(vec![scores(&[[1.0, 2.0, 3.0], [1000.0, 0.0, 0.0]])])
            .unwrap();
        let p = out[0].to_slice::<f32>().unwrap();
        assert!((p[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] < p[1] && p[1] < p[2]);
        assert!((p[3] - 1.0).abs() < 1e-6, "a large logit does not overflow");
    }

    #[test]
    fn topk_with_labels_best_first_ties_to_the_lower_index() {
        let m = model(
            "op = \"topk\"\nk = 2\nlabels = \"labels.txt\"",
            Some("cat\ndog\nbird\n"),
        )
        .unwrap();
        let out = m
            .infer(vec![scores(&[[0.1, 0.7, 0.7], [0.9, 0.05, 0.05]])])
            .unwrap();
        assert_eq!(out[0].data(), TensorData::I64(vec![1, 2, 0, 1]));
        assert_eq!(out[1].data(), TensorData::F32(vec![0.7, 0.7, 0.9, 0.05]));
        assert_eq!(
            out[2].data(),
            TensorData::Bytes(vec![
                b"dog".to_vec(),
                b"bird".to_vec(),
                b"cat".to_vec(),
                b"dog".to_vec()
            ])
        );
        assert!(
            m.check_inputs(&[Tensor::new(vec![1, 1], TensorData::F32(vec![1.0])).unwrap()])
                .is_err()
        );
    }

    #[test]
    fn argmax_threshold_and_refusals() {
        let m = model("op = \"argmax\"\nactivation = \"softmax\"", None).unwrap();
        let out = m.infer(vec![scores(&[[0.0, 5.0, 1.0]])]).unwrap();
        assert_eq!(out[0].data(), TensorData::I64(vec![1]));
        let m = model(
            "op = \"threshold\"\nthreshold = 0.5\nactivation = \"sigmoid\"",
            None,
        )
        .unwrap();
        let out = m.infer(vec![scores(&[[-3.0, 0.0, 3.0]])]).unwrap();
        assert_eq!(out[0].data(), TensorData::I64(vec![0, 1, 1]));
        for bad in [
            "op = \"topk\"",
            "op = \"mean\"",
            "op = \"argmax\"\nactivation = \"relu\"",
            "",
        ] {
            assert!(model(bad, None).is_err(), "{bad}");
        }
    }
}
