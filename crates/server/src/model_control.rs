//! The model control extension's request parameters, the same for REST and gRPC.

use inferd_core::ModelConfig;
use inferd_runtime::RuntimeError;

/// A load request's parameter: the string ones carry a value, others only their presence.
pub struct LoadParameter {
    pub key: String,
    pub string: Option<String>,
}

/// The config override of a load request: parameter `config`, the config.toml schema written
/// as JSON. Model files sent in the request (`file:` parameters) are refused, not ignored.
pub fn config_override(
    parameters: Vec<LoadParameter>,
) -> Result<Option<ModelConfig>, RuntimeError> {
    let mut config = None;
    for LoadParameter { key, string } in parameters {
        if key == "config" {
            let text = string.ok_or_else(|| {
                RuntimeError::InvalidInput(
                    "parameter 'config' must be a string holding JSON".into(),
                )
            })?;
            let parsed = ModelConfig::parse_json(&text).map_err(|e| {
                RuntimeError::InvalidInput(format!(
                    "parameter 'config' is {e}; it takes config.toml's fields as JSON, e.g. \
                     {{\"max_batch_size\": 8, \"instance_count\": 2}}"
                ))
            })?;
            config = Some(parsed);
        } else if key.starts_with("file:") {
            return Err(RuntimeError::InvalidInput(format!(
                "parameter '{key}': model files cannot be sent in a load request; put them in the \
                 model repository"
            )));
        }
    }
    Ok(config)
}
