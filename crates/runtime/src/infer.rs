//! `Runtime::infer`: the one way anything runs a model. The router picks the version, the
//! version's scheduler runs it, and every observer sees the request once when it ends.

use crate::observer::{Completed, Outcome};
use crate::scheduler::stage;
use crate::{
    ErrorKind, InferRequest, InferResponse, RequestContext, Runtime, RuntimeError, Target,
};

impl Runtime {
    /// Runs `request` on the version the router chooses for `target`. A caller that stops
    /// waiting (drops the future) leaves its request recorded as canceled.
    pub async fn infer(
        &self,
        target: &Target,
        request: InferRequest,
        context: &RequestContext,
    ) -> Result<InferResponse, RuntimeError> {
        let kept = self.keep_requests.then(|| request.clone());
        let mut watch = Watch {
            runtime: self,
            target,
            context,
            version: None,
            request: kept,
            done: false,
        };
        let route = {
            let _span = context.trace.as_ref().map(|t| stage(t, "route").entered());
            self.route(target, context)
        };
        let result = match route {
            Ok(route) => {
                watch.version = Some(route.load.spec().version);
                route.load.infer(request, context).await
            }
            Err(e) => Err(e),
        };
        watch.done = true;
        match &result {
            Ok(response) => watch.record(Outcome::Answered(response)),
            Err(e) => watch.record(Outcome::Failed {
                kind: e.kind(),
                message: &e.to_string(),
            }),
        }
        result
    }

    /// Records a request that a front end could not turn into an [`InferRequest`] (unreadable
    /// body, malformed message, over a limit), so that observers see every request.
    pub fn reject(
        &self,
        target: &Target,
        context: &RequestContext,
        kind: ErrorKind,
        message: &str,
    ) {
        let watch = Watch {
            runtime: self,
            target,
            context,
            version: None,
            request: None,
            done: true,
        };
        watch.record(Outcome::Failed { kind, message });
    }
}

/// Tells the observers how a request ended, once; as canceled if it is dropped unfinished.
struct Watch<'a> {
    runtime: &'a Runtime,
    target: &'a Target,
    context: &'a RequestContext,
    version: Option<u64>,
    request: Option<InferRequest>,
    done: bool,
}

impl Watch<'_> {
    fn record(&self, outcome: Outcome<'_>) {
        if self.runtime.observers.is_empty() {
            return;
        }
        let event = Completed {
            context: self.context,
            target: self.target,
            version: self.version,
            request: self.request.as_ref(),
            outcome,
            latency: self.context.received.elapsed(),
        };
        for observer in &self.runtime.observers {
            observer.completed(&event);
        }
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.record(Outcome::Canceled);
        }
    }
}
