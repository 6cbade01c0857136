//! The served description of a model version: its config.toml merged with what the model file
//! declares. Front ends report it (metadata, config) and requests are validated against it.

use crate::sequence::SequenceLayout;
use inferd_core::{
    DEFAULT_MAX_BATCH_SIZE, DynamicBatching, ModelConfig, ModelSignature, Tensor, TensorSpec,
    resolve_dims,
};

#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    pub version: u64,
    pub backend: &'static str,
    pub platform: &'static str,
    /// 0: no batch dimension; otherwise the largest first dimension a request may carry.
    pub max_batch_size: u32,
    /// Dimensions without the batch dimension when `max_batch_size > 0` (Triton's convention).
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub instance_count: u32,
    /// The scheduler settings in force: the config's, or the defaults.
    pub batching: DynamicBatching,
    pub config: ModelConfig,
    /// Each output's labels (its `label_filename`), for the classification extension.
    pub labels: std::collections::BTreeMap<String, std::sync::Arc<[String]>>,
    /// For a sequence model: where its backend tensors come from and go (`inputs` and
    /// `outputs` above are only those clients send and see).
    pub sequence: Option<std::sync::Arc<SequenceLayout>>,
}

impl ModelSpec {
    /// Merges the config with the model's signature; fails when they disagree.
    pub fn derive(
        name: &str,
        version: u64,
        (backend, platform): (&'static str, &'static str),
        config: &ModelConfig,
        signature: &ModelSignature,
    ) -> Result<ModelSpec, String> {
        let batchable = !signature.inputs.is_empty()
            && signature.inputs.iter().all(|i| i.dims.first() == Some(&-1));
        let max_batch_size = match config.max_batch_size {
            Some(n) if n > 0 && !batchable => {
                return Err(format!(
                    "max_batch_size is {n} but not every input of the model has a variable first \
                     dimension; set max_batch_size = 0"
                ));
            }
            Some(n) => n,
            None if batchable => DEFAULT_MAX_BATCH_SIZE,
            None => 0,
        };
        let (sequence, signature) = match &config.sequence_batching {
            Some(sequences) => {
                let (layout, visible) =
                    SequenceLayout::derive(sequences, signature, max_batch_size > 0)?;
                (
                    Some(std::sync::Arc::new(layout)),
                    std::borrow::Cow::Owned(visible),
                )
            }
            None => (None, std::borrow::Cow::Borrowed(signature)),
        };
        let strip = |t: &TensorSpec| -> Result<TensorSpec, String> {
            if max_batch_size == 0 {
                return Ok(t.clone());
            }
            match t.dims.split_first() {
                Some((_, rest)) => Ok(TensorSpec {
                    dims: rest.to_vec(),
                    ..t.clone()
                }),
                None => Err(format!(
                    "'{}' is a scalar, so it has no batch dimension",
                    t.name
                )),
            }
        };
        let model_inputs = signature
            .inputs
            .iter()
            .map(strip)
            .collect::<Result<Vec<_>, _>>()?;
        let model_outputs = signature
            .outputs
            .iter()
            .map(strip)
            .collect::<Result<Vec<_>, _>>()?;
        let inputs = merge("input", &config.inputs, model_inputs, true)?;
        let outputs = merge("output", &config.outputs, model_outputs, false)?;
        Ok(ModelSpec {
            name: name.to_string(),
            version,
            backend,
            platform,
            max_batch_size,
            inputs,
            outputs,
            instance_count: config.instance_count.unwrap_or(1),
            batching: config.dynamic_batching.clone().unwrap_or_default(),
            config: config.clone(),
            labels: Default::default(),
            sequence,
        })
    }

    /// Reads the outputs' label files from the model's directory.
    pub fn read_labels(&mut self, model_dir: &std::path::Path) -> Result<(), String> {
        for output in &self.outputs {
            let Some(file) = &output.label_filename else {
                continue;
            };
            let labels = inferd_core::read_labels(&model_dir.join(file))
                .map_err(|e| format!("output '{}' label_filename: {e}", output.name))?;
            self.labels.insert(output.name.clone(), labels.into());
        }
        Ok(())
    }

    /// Whether the dynamic batcher merges this model's requests: it is enabled and the model
    /// has a batch dimension.
    pub fn batches(&self) -> bool {
        self.batching.enabled && self.max_batch_size > 0
    }

    /// Request inputs (in model order) as the backend takes them: reshaped where the config
    /// says (no copy).
    pub fn inputs_to_backend(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        if self.inputs.iter().all(|i| i.reshape.is_none()) {
            return Ok(inputs);
        }
        let batched = self.max_batch_size > 0;
        inputs
            .into_iter()
            .zip(&self.inputs)
            .map(|(t, spec)| match &spec.reshape {
                Some(r) => reshape_rows(t, batched, &r.shape)
                    .map_err(|e| format!("input '{}': {e}", spec.name)),
                None => Ok(t),
            })
            .collect()
    }

    /// Output `ix` as clients see it: from the backend's `reshape` to the config's dims.
    pub fn output_from_backend(&self, ix: usize, tensor: Tensor) -> Result<Tensor, String> {
        let spec = &self.outputs[ix];
        if spec.reshape.is_none() {
            return Ok(tensor);
        }
        reshape_rows(tensor, self.max_batch_size > 0, &spec.dims)
            .map_err(|e| format!("output '{}': {e}", spec.name))
    }

    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|i| i.name == name)
    }

    /// Full shape as clients see it in metadata: -1 leads when the model batches.
    pub fn full_dims(&self, spec: &TensorSpec) -> Vec<i64> {
        let batch = (self.max_batch_size > 0).then_some(-1);
        batch.into_iter().chain(spec.dims.iter().copied()).collect()
    }
}

/// `dims` and `reshape` hold as many elements (each with at most one variable dimension).
fn check_reshape(kind: &str, d: &TensorSpec, reshape: &[i64]) -> Result<(), String> {
    let variable = |dims: &[i64]| dims.iter().filter(|x| **x < 0).count();
    let fixed = |dims: &[i64]| dims.iter().product::<i64>();
    let fits = match (variable(&d.dims), variable(reshape)) {
        (0, 0) => fixed(&d.dims) == fixed(reshape),
        (1, 1) => true,
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(format!(
            "config {kind} '{}': dims {:?} and reshape {reshape:?} must hold as many elements \
             (both fixed, or one -1 in each)",
            d.name, d.dims
        ))
    }
}

/// `tensor` (with its batch dimension when `batched`) with each row in `dims`.
fn reshape_rows(tensor: Tensor, batched: bool, dims: &[i64]) -> Result<Tensor, String> {
    let rows = batched.then(|| tensor.shape().first().copied().unwrap_or(0));
    let per_row = match rows {
        Some(0) => 0,
        Some(n) => tensor.len() / n,
        None => tensor.len(),
    };
    let inner = resolve_dims(dims, per_row).ok_or_else(|| {
        format!(
            "cannot reshape {:?} to {dims:?} per row ({per_row} elements)",
            tensor.shape()
        )
    })?;
    tensor.reshaped(rows.into_iter().chain(inner).collect())
}

/// Tensors as the model has them, with the config's narrower dimensions where it declares some.
/// Config inputs must name every model input; config outputs may be a subset.
fn merge(
    kind: &str,
    declared: &[TensorSpec],
    model: Vec<TensorSpec>,
    require_all: bool,
) -> Result<Vec<TensorSpec>, String> {
    let names = || {
        model
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for d in declared {
        let Some(m) = model.iter().find(|m| m.name == d.name) else {
            return Err(format!(
                "config {kind} '{}' is not in the model, whose {kind}s are: {}",
                d.name,
                names()
            ));
        };
        if m.datatype != d.datatype {
            return Err(format!(
                "config {kind} '{}' is {} but the model has {}",
                d.name, d.datatype, m.datatype
            ));
        }
        let want = d.model_dims();
        let compatible =
            m.dims.len() == want.len() && m.dims.iter().zip(want).all(|(m, d)| *m == -1 || m == d);
        if !compatible {
            let which = if d.reshape.is_some() {
                "reshape"
            } else {
                "dims"
            };
            return Err(format!(
                "config {kind} '{}' has {which} {want:?} but the model has {:?}",
                d.name, m.dims
            ));
        }
        if let Some(reshape) = &d.reshape {
            check_reshape(kind, d, &reshape.shape)?;
        }
    }
    if require_all
        && !declared.is_empty()
        && let Some(missing) = model
            .iter()
            .find(|m| !declared.iter().any(|d| d.name == m.name))
    {
        return Err(format!(
            "config lists {kind}s but not '{}', which the model needs",
            missing.name
        ));
    }
    Ok(model
        .into_iter()
        .map(|m| {
            declared
                .iter()
                .find(|d| d.name == m.name)
                .cloned()
                .unwrap_or(m)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferd_core::DataType;

    fn spec(name: &str, datatype: DataType, dims: &[i64]) -> TensorSpec {
        TensorSpec::new(name, datatype, dims.to_vec())
    }

    fn iris() -> ModelSignature {
        ModelSignature {
            inputs: vec![spec("X", DataType::F32, &[-1, 4])],
            outputs: vec![
                spec("label", DataType::I64, &[-1]),
                spec("p", DataType::F32, &[-1, 3]),
            ],
        }
    }

    fn derive(config: &ModelConfig, sig: &ModelSignature) -> Result<ModelSpec, String> {
        ModelSpec::derive("iris", 1, ("tract", "onnx"), config, sig)
    }

    #[test]
    fn dynamic_first_dimension_means_batching() {
        let s = derive(&ModelConfig::default(), &iris()).unwrap();
        assert_eq!(s.max_batch_size, DEFAULT_MAX_BATCH_SIZE);
        assert_eq!(s.inputs[0].dims, [4]);
        assert_eq!(s.outputs[0].dims, Vec::<i64>::new());
        assert_eq!(s.full_dims(&s.inputs[0]), [-1, 4]);
    }

    #[test]
    fn fixed_first_dimension_means_no_batching() {
        let sig = ModelSignature {
            inputs: vec![spec("x", DataType::F32, &[2, 2])],
            outputs: vec![],
        };
        let s = derive(&ModelConfig::default(), &sig).unwrap();
        assert_eq!(
            (s.max_batch_size, s.inputs[0].dims.clone()),
            (0, vec![2, 2])
        );
        let config = ModelConfig {
            max_batch_size: Some(4),
            ..Default::default()
        };
        assert!(
            derive(&config, &sig)
                .unwrap_err()
                .contains("max_batch_size = 0")
        );
    }

    #[test]
    fn config_must_agree_with_the_model() {
        let wrong_name = ModelConfig {
            inputs: vec![spec("x", DataType::F32, &[4])],
            ..Default::default()
        };
        assert!(
            derive(&wrong_name, &iris())
                .unwrap_err()
                .contains("'x' is not in the model, whose inputs are: X")
        );
        let wrong_type = ModelConfig {
            inputs: vec![spec("X", DataType::F64, &[4])],
            ..Default::default()
        };
        assert!(
            derive(&wrong_type, &iris())
                .unwrap_err()
                .contains("is FP64 but the model has FP32")
        );
        let wrong_dims = ModelConfig {
            inputs: vec![spec("X", DataType::F32, &[5])],
            ..Default::default()
        };
        assert!(
            derive(&wrong_dims, &iris())
                .unwrap_err()
                .contains("dims [5]")
        );
        let ok = ModelConfig {
            max_batch_size: Some(8),
            ..Default::default()
        };
        assert_eq!(derive(&ok, &iris()).unwrap().max_batch_size, 8);
    }
}
