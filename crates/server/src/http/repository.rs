use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, body};
use crate::ApiError;
use crate::model_control::{LoadParameter, config_override};

#[derive(Deserialize, Default)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

/// `POST /v2/repository/index`: every model version with its state; `{"ready": true}` keeps
/// only the ready ones. The body is optional.
pub async fn index(
    State(app): State<AppState>,
    request_body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body::read(request_body).await?;
    let request: IndexRequest = if body.iter().all(u8::is_ascii_whitespace) {
        IndexRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("malformed index request JSON: {e}")))?
    };
    let rows: Vec<Value> = app
        .runtime
        .index()
        .into_iter()
        .filter(|e| !request.ready || e.state == inferd_runtime::ModelState::Ready)
        .map(|e| {
            let mut row = json!({ "name": e.name, "state": e.state.as_str(), "reason": e.reason });
            if let Some(v) = e.version {
                row["version"] = json!(v.to_string());
            }
            if let Some(bytes) = e.memory_bytes {
                row["memory_bytes"] = json!(bytes);
            }
            row
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

#[derive(Deserialize, Default)]
struct ControlRequest {
    #[serde(default)]
    parameters: serde_json::Map<String, Value>,
}

async fn control_request(request_body: Body) -> Result<ControlRequest, ApiError> {
    let body = body::read(request_body).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ControlRequest::default());
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed model control request JSON: {e}")))
}

/// `POST /v2/repository/models/{m}/load`: answers once the model serves (or why it cannot).
pub async fn load(
    State(app): State<AppState>,
    Path(model): Path<String>,
    request_body: Body,
) -> Result<Json<Value>, ApiError> {
    let request = control_request(request_body).await?;
    let parameters = request
        .parameters
        .into_iter()
        .map(|(key, value)| LoadParameter {
            key,
            string: value.as_str().map(str::to_string),
        })
        .collect();
    let config = config_override(parameters)?;
    app.runtime.load_model(&model, config).await?;
    Ok(Json(json!({})))
}

/// `POST /v2/repository/models/{m}/unload`.
pub async fn unload(
    State(app): State<AppState>,
    Path(model): Path<String>,
    request_body: Body,
) -> Result<Json<Value>, ApiError> {
    control_request(request_body).await?;
    app.runtime.unload_model(&model).await?;
    Ok(Json(json!({})))
}
