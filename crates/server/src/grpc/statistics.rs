//! ModelStatistics answers: the same snapshots as the REST statistics extension.

use std::sync::Arc;

use inferd_runtime::{CountNs, ServedModel, StatsSnapshot};

use super::pb;

fn duo(d: CountNs) -> Option<pb::StatisticDuration> {
    Some(pb::StatisticDuration {
        count: d.count,
        ns: d.ns,
    })
}

pub fn response(rows: &[(Arc<ServedModel>, StatsSnapshot)]) -> pb::ModelStatisticsResponse {
    let model_stats = rows
        .iter()
        .map(|(model, s)| pb::ModelStatistics {
            name: model.spec().name.clone(),
            version: model.spec().version.to_string(),
            last_inference: s.last_inference_ms,
            inference_count: s.inference_count,
            execution_count: s.execution_count,
            inference_stats: Some(pb::InferStatistics {
                success: duo(s.success),
                fail: duo(s.fail),
                queue: duo(s.queue),
                compute_input: duo(s.compute_input),
                compute_infer: duo(s.compute_infer),
                compute_output: duo(s.compute_output),
                cache_hit: duo(CountNs::default()),
                cache_miss: duo(CountNs::default()),
            }),
            batch_stats: s
                .batches
                .iter()
                .map(|b| pb::InferBatchStatistics {
                    batch_size: b.batch_size,
                    compute_input: duo(b.compute_input),
                    compute_infer: duo(b.compute_infer),
                    compute_output: duo(b.compute_output),
                })
                .collect(),
        })
        .collect();
    pb::ModelStatisticsResponse { model_stats }
}
