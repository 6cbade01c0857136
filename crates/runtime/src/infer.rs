//! `Runtime::infer`: the one way anything runs a model. The router picks the version, the
//! version's scheduler runs it, shadow copies run beside it, and every observer sees the
//! request once when it ends.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::cache::Key;
use crate::observer::{Completed, Outcome};
use crate::router::{Route, RouteKind};
use crate::scheduler::stage;
use crate::shadow::{DEFAULT_TOLERANCE, compare};
use crate::{
    ErrorKind, InferRequest, InferResponse, RequestContext, Runtime, RuntimeError, ServedModel,
    Target,
};

impl Runtime {
    /// Runs `request` on the version the router chooses for `target`. A caller that stops
    /// waiting (drops the future) leaves its request recorded as canceled.
    pub async fn infer(
        self: &Arc<Self>,
        target: &Target,
        mut request: InferRequest,
        context: &RequestContext,
    ) -> Result<InferResponse, RuntimeError> {
        let kept = self.keep_requests.then(|| request.clone());
        let classification = std::mem::take(&mut request.classification);
        let mut watch = Watch {
            runtime: self,
            target,
            context,
            version: None,
            spec: None,
            request: kept,
            done: false,
        };
        let route = {
            let _span = context.trace.as_ref().map(|t| stage(t, "route").entered());
            self.route(target, context, &request)
        };
        // Lazy mode: a model that is not loaded loads now, and the request waits for it.
        let route = match route {
            Err(e) if self.loads_on_demand(&target.model, &e) => {
                match self.load_on_demand(&target.model, context.deadline).await {
                    Ok(()) => self.route(target, context, &request),
                    Err(load) => Err(load),
                }
            }
            route => route,
        };
        let result = match route {
            Ok(Route {
                load,
                kind,
                shadows,
                tolerance,
            }) => {
                watch.version = Some(load.spec().version);
                watch.spec = Some(Arc::clone(load.spec()));
                let checked = crate::classification::check(load.spec(), &classification);
                // Per version (so per arm of a split): a hit never crosses versions.
                let cached = match (&self.response_cache, &checked) {
                    (Some(cache), Ok(())) if load.spec().config.caches_responses() => {
                        let looked = Instant::now();
                        let spec = load.spec();
                        let key = Key::of(&spec.name, spec.version, &request, &classification);
                        match cache.get(&key) {
                            Some(hit) => Err((hit, looked.elapsed())),
                            None => Ok(Some((cache, key, looked.elapsed()))),
                        }
                    }
                    _ => Ok(None),
                };
                match cached {
                    // A hit runs nothing: no execution, no shadow copy.
                    Err((mut hit, lookup)) => {
                        hit.route = kind.as_str();
                        hit.cached = true;
                        load.record_cache_hit(context.received.elapsed(), lookup);
                        Ok(hit)
                    }
                    Ok(miss) => {
                        let result = self
                            .run_routed(
                                target,
                                &load,
                                kind,
                                shadows,
                                tolerance,
                                request,
                                &classification,
                                checked,
                                context,
                            )
                            .await;
                        if let Some((cache, key, lookup)) = miss {
                            let stored = Instant::now();
                            if let Ok(response) = &result {
                                cache.put(key, response);
                            }
                            load.record_cache_miss(lookup + stored.elapsed());
                        }
                        result
                    }
                }
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

    /// Runs a routed request: its shadow copies, then the version (or the ensemble's steps),
    /// then classification.
    #[allow(clippy::too_many_arguments)]
    async fn run_routed(
        self: &Arc<Self>,
        target: &Target,
        load: &Arc<ServedModel>,
        kind: RouteKind,
        shadows: Vec<Arc<ServedModel>>,
        tolerance: Option<f64>,
        request: InferRequest,
        classification: &std::collections::BTreeMap<String, usize>,
        checked: Result<(), RuntimeError>,
        context: &RequestContext,
    ) -> Result<InferResponse, RuntimeError> {
        // A request refused before it runs gets no shadow copy either.
        let shadows = if checked.is_ok() { shadows } else { Vec::new() };
        let primaries: Vec<_> = shadows
            .into_iter()
            .filter_map(|shadow| {
                // A full shadow queue drops the copy before it costs anything.
                if !shadow.shadow_has_room() {
                    self.shadows
                        .stats(&target.model, shadow.spec().version)
                        .dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return None;
                }
                Some(self.shadow(target, shadow, &request, context, tolerance))
            })
            .collect();
        let mut result = match (checked, load.steps()) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(steps)) => self.run_ensemble(load, steps, request, context).await,
            (Ok(()), None) => load.infer(request, context).await,
        };
        if let Ok(response) = &mut result {
            response.route = kind.as_str();
        }
        if let RouteKind::Split { rollout: true } = kind {
            let spec = load.spec();
            self.rollout_meters.record(
                &spec.name,
                spec.version,
                result.is_ok(),
                context.received.elapsed(),
            );
        }
        for tx in primaries {
            let _ = tx.send(result.as_ref().ok().cloned());
        }
        // After the shadows got the outputs to compare, before anything records them.
        if classification.is_empty() {
            result
        } else {
            result.and_then(|r| crate::classification::apply(r, classification, load.spec()))
        }
    }

    /// Starts a shadow copy of `request` on `shadow`; the returned sender takes the primary's
    /// answer to compare with. A copy that finds the shadow's queue full is dropped (counted).
    fn shadow(
        self: &Arc<Self>,
        target: &Target,
        shadow: Arc<ServedModel>,
        request: &InferRequest,
        context: &RequestContext,
        tolerance: Option<f64>,
    ) -> oneshot::Sender<Option<InferResponse>> {
        let version = shadow.spec().version;
        let stats = self.shadows.stats(&target.model, version);
        let (tx, rx) = oneshot::channel::<Option<InferResponse>>();
        let (runtime, target, request) = (Arc::clone(self), target.clone(), request.clone());
        let mut context = context.clone();
        context.shadow_of = Some(context.id.clone());
        context.trace = None;
        // A shadow's answers are compared, never sent.
        context.responses = None;
        tokio::spawn(async move {
            let kept = runtime.keep_requests.then(|| request.clone());
            let answer = shadow.infer_shadow(request, &context).await;
            match &answer {
                Err(RuntimeError::QueueFull { .. }) => {
                    stats
                        .dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(_) => {
                    stats
                        .errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(answer) => {
                    if let Ok(Some(primary)) = rx.await {
                        compare(
                            &stats,
                            &primary,
                            answer,
                            tolerance.unwrap_or(DEFAULT_TOLERANCE),
                        );
                    }
                }
            }
            let watch = Watch {
                runtime: &runtime,
                target: &target,
                context: &context,
                version: Some(version),
                spec: Some(Arc::clone(shadow.spec())),
                request: kept,
                done: true,
            };
            match &answer {
                Ok(response) => watch.record(Outcome::Answered(response)),
                Err(e) => watch.record(Outcome::Failed {
                    kind: e.kind(),
                    message: &e.to_string(),
                }),
            }
        });
        tx
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
            spec: None,
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
    spec: Option<Arc<crate::ModelSpec>>,
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
            spec: self.spec.as_deref(),
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
