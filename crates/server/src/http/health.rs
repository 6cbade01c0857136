use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;

pub async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

pub async fn ready(State(app): State<AppState>) -> Response {
    let readiness = app.runtime.readiness();
    let ready = if app.config.strict_readiness {
        readiness.ready
    } else {
        !readiness.loading
    };
    if ready {
        return Json(json!({ "ready": true })).into_response();
    }
    let body = json!({
        "ready": false,
        "error": format!("not ready: {}", readiness.not_ready.join("; ")),
        "not_ready": readiness.not_ready,
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "inferd",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "model_configuration"],
    }))
}
