//! Warmup requests from config.toml's `[[warmup]]` entries, shaped by the model's spec.

use std::path::Path;

use half::{bf16, f16};
use inferd_core::{DataType, Tensor, TensorData, TensorSpec, Warmup, WarmupData, check_binary_len};

use crate::ModelSpec;
use crate::scheduler::WarmupRun;

/// Largest warmup tensor, in elements (256 MiB of FP32).
const MAX_ELEMENTS: usize = 1 << 26;
/// Largest warmup sample file.
const MAX_SAMPLE_BYTES: u64 = 1 << 30;

/// The warmup runs of a model version; `model_dir` is where sample files are looked up.
pub fn runs(spec: &ModelSpec, model_dir: &Path) -> Result<Vec<WarmupRun>, String> {
    spec.config
        .warmup
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let inputs = spec
                .inputs
                .iter()
                .map(|input| tensor(spec, input, w, model_dir))
                .collect::<Result<Vec<_>, _>>()
                .and_then(|inputs| spec.inputs_to_backend(inputs))
                .map_err(|e| format!("warmup {}: {e}", i + 1))?;
            Ok(WarmupRun {
                inputs,
                count: w.count,
            })
        })
        .collect()
}

fn tensor(
    spec: &ModelSpec,
    input: &TensorSpec,
    warmup: &Warmup,
    model_dir: &Path,
) -> Result<Tensor, String> {
    let name = &input.name;
    let dims = match warmup.dims.get(name) {
        Some(dims) if dims.len() != input.dims.len() => {
            return Err(format!(
                "dims for input '{name}' have {} entries; the input has {} dimensions {:?}",
                dims.len(),
                input.dims.len(),
                input.dims
            ));
        }
        Some(dims) => dims.clone(),
        None => input.dims.clone(),
    };
    let batch = if spec.max_batch_size > 0 {
        if warmup.batch_size > spec.max_batch_size {
            return Err(format!(
                "batch_size {} is above max_batch_size {}",
                warmup.batch_size, spec.max_batch_size
            ));
        }
        Some(warmup.batch_size as usize)
    } else {
        None
    };
    let shape: Vec<usize> = batch
        .into_iter()
        .chain(dims.iter().map(|d| if *d < 0 { 1 } else { *d as usize }))
        .collect();
    let count = shape
        .iter()
        .try_fold(1usize, |n, d| n.checked_mul(*d))
        .filter(|n| *n <= MAX_ELEMENTS)
        .ok_or_else(|| {
            format!("input '{name}' of shape {shape:?} is above the warmup limit of {MAX_ELEMENTS} elements")
        })?;
    let data = match warmup.files.get(name) {
        Some(file) => {
            let path = model_dir.join(file);
            let meta = std::fs::metadata(&path)
                .map_err(|e| format!("cannot read sample {}: {e}", path.display()))?;
            // Not a device, a pipe or something huge: a sample is a small regular file.
            if !meta.is_file() || meta.len() > MAX_SAMPLE_BYTES {
                return Err(format!(
                    "sample {} must be a regular file of at most {MAX_SAMPLE_BYTES} bytes",
                    path.display()
                ));
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("cannot read sample {}: {e}", path.display()))?;
            check_binary_len(input.datatype, &shape, bytes.len())
                .map_err(|e| format!("sample {} for input '{name}': {e}", path.display()))?;
            TensorData::from_le_bytes(input.datatype, &bytes)?
        }
        None => synthetic(input.datatype, count, warmup.data),
    };
    Tensor::new(shape, data).map_err(|e| format!("input '{name}': {e}"))
}

/// Zeros, or values in [0, 1) (0 or 1 for integers) from a fixed-seed generator.
fn synthetic(datatype: DataType, count: usize, kind: WarmupData) -> TensorData {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let values: Vec<f64> = (0..count)
        .map(|_| match kind {
            WarmupData::Zero => 0.0,
            WarmupData::Random => {
                // xorshift64: reproducible and dependency-free; quality is irrelevant here.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64
            }
        })
        .collect();
    let ints = || values.iter().map(|v| (v * 2.0) as u8);
    match datatype {
        DataType::Bool => TensorData::Bool(values.iter().map(|v| *v >= 0.5).collect()),
        DataType::U8 => TensorData::U8(ints().collect()),
        DataType::U16 => TensorData::U16(ints().map(u16::from).collect()),
        DataType::U32 => TensorData::U32(ints().map(u32::from).collect()),
        DataType::U64 => TensorData::U64(ints().map(u64::from).collect()),
        DataType::I8 => TensorData::I8(ints().map(|v| v as i8).collect()),
        DataType::I16 => TensorData::I16(ints().map(i16::from).collect()),
        DataType::I32 => TensorData::I32(ints().map(i32::from).collect()),
        DataType::I64 => TensorData::I64(ints().map(i64::from).collect()),
        DataType::F16 => TensorData::F16(values.iter().map(|v| f16::from_f64(*v)).collect()),
        DataType::F32 => TensorData::F32(values.iter().map(|v| *v as f32).collect()),
        DataType::F64 => TensorData::F64(values),
        DataType::BF16 => TensorData::BF16(values.iter().map(|v| bf16::from_f64(*v)).collect()),
        DataType::Bytes => TensorData::Bytes(
            values
                .iter()
                .map(|v| match kind {
                    WarmupData::Zero => Vec::new(),
                    WarmupData::Random => format!("{v:.3}").into_bytes(),
                })
                .collect(),
        ),
    }
}
