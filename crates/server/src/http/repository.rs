use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, body};
use crate::ApiError;

#[derive(Deserialize, Default)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

/// `POST /v2/repository/index`: every model version with its state; `{"ready": true}` keeps
/// only the ready ones. The body is optional.
pub async fn index(
    State(app): State<AppState>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body::read(&headers, request_body, app.config.max_message_bytes).await?;
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
            row
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}
