//! Times one model on a backend in-process, single thread, for bench/ scripts.
//! Usage: time_model <version dir> <batch> <iterations> [tract|onnxruntime|trees].
//! Prints one JSON line of microseconds. ONNX Runtime comes from INFERD_ONNXRUNTIME_LIB or
//! the default place of scripts/get_onnxruntime.py.

use std::path::PathBuf;
use std::time::Instant;

use inferd_backend_onnxruntime::OnnxRuntimeBackend;
use inferd_backend_tract::TractBackend;
use inferd_core::{Backend, DataType, ModelConfig, Tensor, TensorData};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: time_model <version dir> <batch> <iterations>")?,
    );
    let batch: usize = args.next().ok_or("batch missing")?.parse()?;
    let iterations: usize = args.next().ok_or("iterations missing")?.parse()?;
    let model = match args.next().as_deref() {
        None | Some("tract") => TractBackend.load(&dir, &ModelConfig::default())?,
        Some("onnxruntime") => {
            let library = std::env::var_os("INFERD_ONNXRUNTIME_LIB")
                .map(PathBuf::from)
                .unwrap_or_else(OnnxRuntimeBackend::default_library);
            OnnxRuntimeBackend::new(library).load(&dir, &ModelConfig::default())?
        }
        Some("trees") => inferd_backend_trees::TreeBackend.load(&dir, &ModelConfig::default())?,
        Some(other) => return Err(format!("unknown backend {other}").into()),
    };
    let inputs = || -> Result<Vec<Tensor>, String> {
        model
            .signature()
            .inputs
            .iter()
            .map(|spec| {
                let mut shape: Vec<usize> = spec
                    .dims
                    .iter()
                    .map(|d| if *d < 0 { 1 } else { *d as usize })
                    .collect();
                shape[0] = batch;
                let n = shape.iter().product::<usize>();
                // Deterministic values spread over a typical feature range.
                let values = (0..n)
                    .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
                    .collect();
                match spec.datatype {
                    DataType::F32 => Tensor::new(shape, TensorData::F32(values)),
                    other => Err(format!("time_model feeds FP32 inputs only, not {other}")),
                }
            })
            .collect()
    };
    for _ in 0..iterations.div_ceil(10) {
        model.infer(inputs()?)?;
    }
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let x = inputs()?;
        let start = Instant::now();
        model.infer(x)?;
        times.push(start.elapsed().as_secs_f64() * 1e6);
    }
    // The mean is the throughput figure (all calls' time, slow ones too); percentiles for latency.
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    times.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        r#"{{"median_us": {:.1}, "p90_us": {:.1}, "p99_us": {:.1}, "mean_us": {:.1}}}"#,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        mean
    );
    Ok(())
}
