//! The one place where every request is recorded. `Runtime::infer` (and `Runtime::reject`,
//! for requests a front end could not decode) calls each observer once per request, when it
//! ends: answered, failed, or abandoned by its caller. Access logs, audit records and the like
//! are observers; front ends never record requests themselves.

use std::time::Duration;

use crate::{ErrorKind, InferRequest, InferResponse, ModelSpec, RequestContext, Target};

/// How a request ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    Answered(&'a InferResponse),
    Failed {
        kind: ErrorKind,
        message: &'a str,
    },
    /// The caller went away before the answer (its future was dropped).
    Canceled,
}

/// One finished request.
#[derive(Debug)]
pub struct Completed<'a> {
    pub context: &'a RequestContext,
    pub target: &'a Target,
    /// The version the router chose, when it got that far.
    pub version: Option<u64>,
    /// That version's description (its config included).
    pub spec: Option<&'a ModelSpec>,
    /// The request as the model received it; `None` when it could not be decoded.
    pub request: Option<&'a InferRequest>,
    pub outcome: Outcome<'a>,
    /// From the context's receive time to now.
    pub latency: Duration,
}

pub trait Observer: Send + Sync {
    fn completed(&self, event: &Completed<'_>);

    /// Something happened to a model outside any request (e.g. its source moved to another
    /// version); observers that keep a record of the model's life note it.
    fn event(&self, _model: &str, _message: &str) {}

    /// Whether [`Completed::request`] is wanted: the runtime then keeps each request (a cheap
    /// clone: tensors share their buffers) until it ends.
    fn needs_request(&self) -> bool {
        false
    }
}
