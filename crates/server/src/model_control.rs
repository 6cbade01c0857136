//! The model control extension's request parameters, the same for REST and gRPC.

use inferd_core::ModelConfig;
use inferd_runtime::RuntimeError;

use crate::v2::triton_config::from_triton_json;

/// A load request's parameter: the string ones carry a value, others only their presence.
pub struct LoadParameter {
    pub key: String,
    pub string: Option<String>,
}

/// The config override of a load request: parameter `config`, either config.toml's schema written
/// as JSON or Triton's model configuration JSON (as `/config` answers it). Model files sent in
/// the request (`file:` parameters) are refused, not ignored.
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
            let parsed = parse_config(&text)?;
            // The interpreter is a program the server starts: only config.toml on disk or
            // the command line may choose it, not a network request.
            if parsed.parameters.contains_key("python") {
                return Err(RuntimeError::InvalidInput(
                    "parameter 'config' may not set the 'python' interpreter; set it in the \
                     model's config.toml"
                        .into(),
                ));
            }
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

fn parse_config(text: &str) -> Result<ModelConfig, RuntimeError> {
    let ours = match ModelConfig::parse_json(text) {
        Ok(config) => return Ok(config),
        Err(e) => e,
    };
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| RuntimeError::InvalidInput(format!("parameter 'config' is not JSON: {e}")))?;
    from_triton_json(&value).map_err(|triton| {
        RuntimeError::InvalidInput(format!(
            "parameter 'config' is neither config.toml's schema as JSON ({ours}) nor Triton's \
             model configuration ({triton})"
        ))
    })
}
