//! Model repository, lifecycle, routing and request execution. Knows models and tensors, never
//! wire formats: front ends hand [`Runtime::infer`] a [`Target`], an [`InferRequest`] and a
//! [`RequestContext`], and get an [`InferResponse`] back.

mod context;
mod error;
mod fingerprint;
mod infer;
mod lifecycle;
mod loader;
mod lookup;
pub mod memory;
mod observer;
mod registry;
mod repository;
mod request;
mod router;
mod scheduler;
mod served;
mod spec;
mod stats;
mod warmup;

pub use context::{Protocol, RequestContext, Target};
pub use error::{ErrorKind, LoadFault, RuntimeError};
pub use lookup::{ModelView, VersionStatistics};
pub use observer::{Completed, Observer, Outcome};
pub use registry::{ControlMode, IndexEntry, ModelState, Readiness, Runtime};
pub use request::{InferRequest, InferResponse, Parameter, Parameters};
pub(crate) use served::ServedModel;
pub use spec::ModelSpec;
pub use stats::{
    BATCH_BUCKETS, BatchSnapshot, CountNs, FailureReason, HistogramSnapshot, LATENCY_BUCKETS,
    StatsSnapshot,
};
