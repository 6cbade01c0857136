/// Why a job cannot run or stopped. Rows that fail are not errors of the job: they go to the
/// errors file (until `--max-errors`).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    Model(String),
    #[error("stopped: {errors} rows failed, more than --max-errors {max}")]
    TooManyErrors { errors: u64, max: u64 },
}

impl BatchError {
    pub fn io(path: impl std::fmt::Display, e: impl std::fmt::Display) -> BatchError {
        BatchError::Io {
            path: path.to_string(),
            message: e.to_string(),
        }
    }
}
