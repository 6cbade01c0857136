use inferd_core::NamedTensor;

/// One inference call as the runtime sees it, whatever protocol carried it.
#[derive(Debug, Clone, Default)]
pub struct InferRequest {
    pub inputs: Vec<NamedTensor>,
    /// Outputs to return, in this order; `None` returns all of them in model order.
    pub outputs: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct InferResponse {
    pub model_name: String,
    /// The version that produced the outputs.
    pub model_version: u64,
    pub outputs: Vec<NamedTensor>,
}
