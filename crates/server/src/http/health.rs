use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::config;

pub async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

pub async fn ready(State(app): State<AppState>) -> Response {
    let (ready, not_ready) = config::readiness(&app.runtime, &app.config);
    if ready {
        return Json(json!({ "ready": true })).into_response();
    }
    let body = json!({
        "ready": false,
        "error": format!("not ready: {}", not_ready.join("; ")),
        "not_ready": not_ready,
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": config::SERVER_NAME,
        "version": config::SERVER_VERSION,
        "extensions": config::EXTENSIONS,
    }))
}
