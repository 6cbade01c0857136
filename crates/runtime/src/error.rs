/// Broad classes that front ends map to their protocol's status codes, each in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong; retrying it unchanged fails again.
    InvalidArgument,
    /// No such model or version.
    NotFound,
    /// The model exists but cannot serve now (not loaded, failed to load, queue full,
    /// shutting down).
    Unavailable,
    /// The request is larger than the server accepts.
    TooLarge,
    /// The server or the model failed.
    Internal,
    /// No valid credentials (front ends only).
    Unauthenticated,
    /// Valid credentials without the scope needed.
    PermissionDenied,
    /// The caller's request rate is over its quota (front ends only).
    RateLimited,
}

/// Why a model could not be loaded: what the user can fix, or what the server failed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadFault {
    /// The model's files or config (a user's fix).
    Model,
    /// The server (a crashed load, no threads): retrying may work.
    Server,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    InvalidInput(String),
    /// Triton's wording, which clients match on.
    #[error("Request for unknown model: '{0}' is not found")]
    UnknownModel(String),
    #[error("{}", unknown_version(model, version))]
    UnknownVersion { model: String, version: String },
    #[error("model '{model}' is not ready: {reason}")]
    NotReady { model: String, reason: String },
    #[error("model '{model}' has {limit} requests queued already (max_queue_size); retry later")]
    QueueFull { model: String, limit: usize },
    #[error(
        "request to model '{model}' timed out after {waited_us} us in the queue and was not run"
    )]
    TimedOut { model: String, waited_us: u128 },
    #[error("{0}")]
    ModelControl(String),
    #[error("failed to load model '{model}': {reason}")]
    LoadFailed {
        model: String,
        reason: String,
        fault: LoadFault,
    },
    #[error("{0}")]
    Store(String),
    #[error("'{principal}' may not run model '{model}': that needs scope inference:{model}")]
    Forbidden { principal: String, model: String },
    #[error("ensemble '{ensemble}' {step} failed: {source}")]
    Step {
        ensemble: String,
        step: String,
        source: Box<RuntimeError>,
    },
    #[error("model '{model}' version {version} failed: {message}")]
    Inference {
        model: String,
        version: u64,
        message: String,
    },
}

impl RuntimeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::InvalidInput(_) | RuntimeError::ModelControl(_) => {
                ErrorKind::InvalidArgument
            }
            RuntimeError::LoadFailed { fault, .. } => match fault {
                LoadFault::Model => ErrorKind::InvalidArgument,
                LoadFault::Server => ErrorKind::Internal,
            },
            RuntimeError::UnknownModel(_) | RuntimeError::UnknownVersion { .. } => {
                ErrorKind::NotFound
            }
            RuntimeError::NotReady { .. }
            | RuntimeError::QueueFull { .. }
            | RuntimeError::TimedOut { .. } => ErrorKind::Unavailable,
            RuntimeError::Inference { .. } | RuntimeError::Store(_) => ErrorKind::Internal,
            RuntimeError::Forbidden { .. } => ErrorKind::PermissionDenied,
            // A step model that is missing is the ensemble's problem, not the caller's.
            RuntimeError::Step { source, .. } => match source.kind() {
                ErrorKind::NotFound | ErrorKind::PermissionDenied => ErrorKind::Unavailable,
                kind => kind,
            },
        }
    }
}

fn unknown_version(model: &str, version: &str) -> String {
    if version.parse::<u64>().is_ok() {
        format!("Request for unknown model: '{model}' version {version} is not found")
    } else {
        format!(
            "Request for unknown model: '{model}' version '{version}' is not found (no such \
             version or alias)"
        )
    }
}
