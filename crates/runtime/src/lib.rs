//! Model repository, lifecycle, routing and request execution. Knows models and tensors, never
//! wire formats: front ends hand [`Runtime::infer`] a [`Target`], an [`InferRequest`] and a
//! [`RequestContext`], and get an [`InferResponse`] back.

pub mod audit;
mod budget;
mod cache;
mod classification;
mod context;
mod ensemble;
mod error;
mod fingerprint;
mod grant;
pub mod http_client;
mod infer;
mod lifecycle;
mod loader;
mod lookup;
pub mod memory;
mod observer;
pub mod policy;
mod registry;
mod repository;
mod request;
mod rollout;
mod router;
mod scheduler;
mod sequence;
mod served;
mod shadow;
pub mod source;
mod spec;
pub mod state;
mod stats;
mod time;
mod traffic;
mod warmup;

pub use budget::{Budget, BudgetFigures};
pub use cache::CacheFigures;
pub use context::{Protocol, RequestContext, ResponseSink, Target};
pub use error::{ErrorKind, LoadFault, RuntimeError};
pub use grant::ModelGrant;
pub use lookup::{ModelView, VersionStatistics};
pub use observer::{Completed, Observer, Outcome};
pub use registry::{ControlMode, IndexEntry, ModelState, Readiness, Runtime};
pub use request::{InferRequest, InferResponse, Parameter, Parameters};
pub use rollout::{
    ArmFigures, CurrentFigures, Decision, Rollout, RolloutAction, RolloutPlan, RolloutState,
    RolloutView,
};
pub use router::RouteKind;
pub use sequence::{Drain, Feed, SequenceCounts, SequenceLayout};
pub(crate) use served::ServedModel;
pub use shadow::{DEFAULT_TOLERANCE, DIFF_BUCKETS, ShadowFigures, outputs_agree};
pub use spec::ModelSpec;
pub use stats::{
    BATCH_BUCKETS, BatchSnapshot, CountNs, FailureReason, HistogramSnapshot, LATENCY_BUCKETS,
    StatsSnapshot,
};
pub use time::{parse_rfc3339, rfc3339};
pub use traffic::PolicySource;
