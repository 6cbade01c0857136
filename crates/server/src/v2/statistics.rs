//! The statistics extension's JSON (`GET /v2/models[/{m}[/versions/{v}]]/stats`), in Triton's
//! shape: per loaded version, durations as {count, ns}.

use std::sync::Arc;

use inferd_runtime::{CountNs, ServedModel, StatsSnapshot};
use serde_json::{Value, json};

fn duo(d: CountNs) -> Value {
    json!({ "count": d.count, "ns": d.ns })
}

pub fn statistics(rows: &[(Arc<ServedModel>, StatsSnapshot)]) -> Value {
    let model_stats: Vec<Value> = rows
        .iter()
        .map(|(model, s)| {
            let batch_stats: Vec<Value> = s
                .batches
                .iter()
                .map(|b| {
                    json!({
                        "batch_size": b.batch_size,
                        "compute_input": duo(b.compute_input),
                        "compute_infer": duo(b.compute_infer),
                        "compute_output": duo(b.compute_output),
                    })
                })
                .collect();
            json!({
                "name": model.spec().name,
                "version": model.spec().version.to_string(),
                "last_inference": s.last_inference_ms,
                "inference_count": s.inference_count,
                "execution_count": s.execution_count,
                "inference_stats": {
                    "success": duo(s.success),
                    "fail": duo(s.fail),
                    "queue": duo(s.queue),
                    "compute_input": duo(s.compute_input),
                    "compute_infer": duo(s.compute_infer),
                    "compute_output": duo(s.compute_output),
                    "cache_hit": duo(CountNs::default()),
                    "cache_miss": duo(CountNs::default()),
                },
                "batch_stats": batch_stats,
            })
        })
        .collect();
    json!({ "model_stats": model_stats })
}
