use std::collections::BTreeMap;

use inferd_core::NamedTensor;

/// A request parameter, as both protocols can carry it (gRPC's `InferParameter` oneof, JSON
/// scalars). Features such as priority, timeout and sequence ids read them from here.
#[derive(Debug, Clone, PartialEq)]
pub enum Parameter {
    Bool(bool),
    Int64(i64),
    Uint64(u64),
    Double(f64),
    String(String),
}

impl Parameter {
    /// The value as an unsigned integer, when it is one (either integer kind, non-negative).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Parameter::Uint64(v) => Some(*v),
            Parameter::Int64(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Parameter::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

pub type Parameters = BTreeMap<String, Parameter>;

/// One inference call as the runtime sees it, whatever protocol carried it (the request's id,
/// caller and deadline travel in its [`crate::RequestContext`]).
#[derive(Debug, Clone, Default)]
pub struct InferRequest {
    pub parameters: Parameters,
    pub inputs: Vec<NamedTensor>,
    /// Outputs to return, in this order; `None` returns all of them in model order.
    pub outputs: Option<Vec<String>>,
    /// Outputs answered as their K best classes (Triton's classification extension): output
    /// name -> K.
    pub classification: std::collections::BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Default)]
pub struct InferResponse {
    /// How the router chose the version (`version`, `alias:<name>`, `split`, `rollout`,
    /// `alias:production`, `latest`).
    pub route: String,
    pub model_name: String,
    /// The version that produced the outputs.
    pub model_version: u64,
    pub outputs: Vec<NamedTensor>,
    /// A decoupled model's last word: its responses went to the request's
    /// [`crate::ResponseSink`] and this one only ends the request (no outputs).
    pub decoupled: bool,
    /// Answered from the response cache, without running the model.
    pub cached: bool,
}
