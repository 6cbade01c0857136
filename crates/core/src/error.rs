use std::path::PathBuf;

/// A model's config.toml could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Config text (not a file) that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigText {
    #[error("not valid: {0}")]
    Parse(String),
    #[error("{0}")]
    Invalid(String),
}

/// What a backend reports. Load errors name the file and the cause; inference errors say what
/// the runtime could not do with inputs that passed validation.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot load {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("{path} uses operators the {backend} backend does not implement: {ops}")]
    UnsupportedOperators {
        path: PathBuf,
        backend: &'static str,
        ops: String,
    },
    #[error("config does not match the model: {0}")]
    ConfigMismatch(String),
    #[error("inference failed: {0}")]
    Inference(String),
}
