//! Model repository, lifecycle and request execution. Knows models and tensors, never wire
//! formats: front ends hand it an [`InferRequest`] and get an [`InferResponse`] back.

mod error;
mod fingerprint;
mod lifecycle;
mod loader;
pub mod memory;
mod registry;
mod repository;
mod request;
mod scheduler;
mod served;
mod spec;
mod stats;
mod warmup;

pub use error::{ErrorKind, RuntimeError};
pub use registry::{ControlMode, IndexEntry, ModelState, Readiness, Runtime};
pub use request::{InferRequest, InferResponse, Parameter, Parameters};
pub use served::ServedModel;
pub use spec::ModelSpec;
pub use stats::{
    BATCH_BUCKETS, BatchSnapshot, CountNs, FailureReason, HistogramSnapshot, LATENCY_BUCKETS,
    StatsSnapshot,
};
