//! The statistics extension (`GET /v2/models[/{m}[/versions/{v}]]/stats`, gRPC
//! ModelStatistics), in Triton's shape: per loaded version, durations as {count, ns}.

use inferd_runtime::{CountNs, VersionStatistics};
use serde::Serialize;

use crate::pb;

#[derive(Debug, Clone, Serialize)]
pub struct Statistics {
    pub model_stats: Vec<ModelStatistics>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelStatistics {
    pub name: String,
    pub version: String,
    pub last_inference: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub inference_stats: InferStatistics,
    pub batch_stats: Vec<BatchStatistics>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InferStatistics {
    pub success: Duration,
    pub fail: Duration,
    pub queue: Duration,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
    pub cache_hit: Duration,
    pub cache_miss: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchStatistics {
    pub batch_size: u64,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
}

/// Triton's StatisticDuration.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Duration {
    pub count: u64,
    pub ns: u64,
}

impl From<CountNs> for Duration {
    fn from(d: CountNs) -> Duration {
        Duration {
            count: d.count,
            ns: d.ns,
        }
    }
}

impl Statistics {
    pub fn of(rows: &[VersionStatistics]) -> Statistics {
        let model_stats = rows
            .iter()
            .map(|row| {
                let s = &row.stats;
                ModelStatistics {
                    name: row.name.clone(),
                    version: row.version.to_string(),
                    last_inference: s.last_inference_ms,
                    inference_count: s.inference_count,
                    execution_count: s.execution_count,
                    inference_stats: InferStatistics {
                        success: s.success.into(),
                        fail: s.fail.into(),
                        queue: s.queue.into(),
                        compute_input: s.compute_input.into(),
                        compute_infer: s.compute_infer.into(),
                        compute_output: s.compute_output.into(),
                        cache_hit: s.cache_hit.into(),
                        cache_miss: s.cache_miss.into(),
                    },
                    batch_stats: s
                        .batches
                        .iter()
                        .map(|b| BatchStatistics {
                            batch_size: b.batch_size,
                            compute_input: b.compute_input.into(),
                            compute_infer: b.compute_infer.into(),
                            compute_output: b.compute_output.into(),
                        })
                        .collect(),
                }
            })
            .collect();
        Statistics { model_stats }
    }
}

fn duration(d: Duration) -> Option<pb::StatisticDuration> {
    let Duration { count, ns } = d;
    Some(pb::StatisticDuration { count, ns })
}

impl From<Statistics> for pb::ModelStatisticsResponse {
    fn from(s: Statistics) -> Self {
        let Statistics { model_stats } = s;
        let model_stats = model_stats
            .into_iter()
            .map(|m| {
                let ModelStatistics {
                    name,
                    version,
                    last_inference,
                    inference_count,
                    execution_count,
                    inference_stats,
                    batch_stats,
                } = m;
                let InferStatistics {
                    success,
                    fail,
                    queue,
                    compute_input,
                    compute_infer,
                    compute_output,
                    cache_hit,
                    cache_miss,
                } = inference_stats;
                pb::ModelStatistics {
                    name,
                    version,
                    last_inference,
                    inference_count,
                    execution_count,
                    inference_stats: Some(pb::InferStatistics {
                        success: duration(success),
                        fail: duration(fail),
                        queue: duration(queue),
                        compute_input: duration(compute_input),
                        compute_infer: duration(compute_infer),
                        compute_output: duration(compute_output),
                        cache_hit: duration(cache_hit),
                        cache_miss: duration(cache_miss),
                    }),
                    batch_stats: batch_stats
                        .into_iter()
                        .map(|b| {
                            let BatchStatistics {
                                batch_size,
                                compute_input,
                                compute_infer,
                                compute_output,
                            } = b;
                            pb::InferBatchStatistics {
                                batch_size,
                                compute_input: duration(compute_input),
                                compute_infer: duration(compute_infer),
                                compute_output: duration(compute_output),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        pb::ModelStatisticsResponse { model_stats }
    }
}
