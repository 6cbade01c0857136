//! Where rows are scored: this process's runtime, or (in the CLI) running servers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use inferd_core::NamedTensor;
use inferd_runtime::{InferRequest, Protocol, RequestContext, Runtime, Target};

use crate::ModelInfo;

/// A model's answer to one request.
#[derive(Debug, Clone)]
pub struct Scored {
    pub version: String,
    pub outputs: Vec<NamedTensor>,
}

pub type ScoreFuture = Pin<Box<dyn Future<Output = Result<Scored, String>> + Send>>;

/// Runs requests of one model. `score` errors are per request: its rows go to the errors
/// file (after a retry row by row, so one bad row does not take its chunk with it).
pub trait Scorer: Send + Sync {
    fn model(&self) -> &ModelInfo;
    /// Requests `id` (for logs and the audit trail).
    fn score(&self, id: String, request: InferRequest) -> ScoreFuture;
}

/// The runtime of this process: `runtime.infer`, so routing, the scheduler, the dynamic
/// batcher, observers (audit) are those of `serve`.
pub struct InProcess {
    runtime: Arc<Runtime>,
    target: Target,
    model: ModelInfo,
}

impl InProcess {
    /// `version`: a number or an alias; `None` lets the router choose (as online requests).
    pub fn new(
        runtime: Arc<Runtime>,
        model: &str,
        version: Option<&str>,
    ) -> Result<InProcess, String> {
        let view = runtime
            .describe(model, version)
            .map_err(|e| e.to_string())?;
        let spec = &view.spec;
        let info = ModelInfo {
            name: model.to_string(),
            max_batch_size: spec.max_batch_size,
            inputs: spec.inputs.clone(),
            outputs: spec.outputs.clone(),
        };
        Ok(InProcess {
            target: Target::new(model, version),
            runtime,
            model: info,
        })
    }
}

impl Scorer for InProcess {
    fn model(&self) -> &ModelInfo {
        &self.model
    }

    fn score(&self, id: String, request: InferRequest) -> ScoreFuture {
        let (runtime, target) = (Arc::clone(&self.runtime), self.target.clone());
        Box::pin(async move {
            let mut context = RequestContext::new(Protocol::Batch);
            context.set_id(&id, String::new);
            let response = runtime
                .infer(&target, request, &context)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Scored {
                version: response.model_version.to_string(),
                outputs: response.outputs,
            })
        })
    }
}
