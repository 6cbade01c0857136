//! `/v2/systemsharedmemory/...` over the server's region registry, and
//! `/v2/cudasharedmemory/...`, refused with what to use instead.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, body};
use crate::ApiError;
use crate::shm::cuda_unsupported;

#[derive(Deserialize)]
struct Register {
    key: String,
    #[serde(default)]
    offset: u64,
    byte_size: u64,
}

fn status_of(app: &AppState, name: Option<&str>) -> Result<Json<Value>, ApiError> {
    let regions = app.config.shared_memory.status(name)?;
    let list: Vec<Value> = regions
        .iter()
        .map(
            |r| json!({"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}),
        )
        .collect();
    Ok(Json(Value::Array(list)))
}

pub async fn status(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    status_of(&app, None)
}

pub async fn region_status(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    status_of(&app, Some(&name))
}

pub async fn register(
    State(app): State<AppState>,
    Path(name): Path<String>,
    request_body: Body,
) -> Result<(), ApiError> {
    let body = body::read(request_body).await?;
    let r: Register = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "malformed shared memory register JSON (wants key, byte_size and optionally offset): {e}"
        ))
    })?;
    app.config
        .shared_memory
        .register(&name, &r.key, r.offset, r.byte_size)
}

pub async fn unregister_all(State(app): State<AppState>) -> Result<(), ApiError> {
    app.config.shared_memory.unregister(None)
}

pub async fn unregister(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<(), ApiError> {
    app.config.shared_memory.unregister(Some(&name))
}

pub async fn cuda() -> ApiError {
    cuda_unsupported()
}
