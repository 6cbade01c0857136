//! `GET`/`POST /v2/logging`: the log settings (crate::settings::log) as JSON.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use serde_json::{Map, Value};

use super::{AppState, body};
use crate::ApiError;
use crate::settings::log::{self, Update};

fn settings(app: &AppState) -> Value {
    let map: Map<String, Value> = log::current(&app.telemetry)
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                log::Value::Bool(b) => Value::from(b),
                log::Value::U32(v) => Value::from(v),
                log::Value::Text(t) => Value::from(t),
            };
            (name.to_string(), value)
        })
        .collect();
    Value::Object(map)
}

pub async fn get(State(app): State<AppState>) -> Json<Value> {
    Json(settings(&app))
}

pub async fn post(
    State(app): State<AppState>,
    request_body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body::read(request_body).await?;
    let update: Update = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed logging settings JSON: {e}")))?;
    update.apply(&app.telemetry)?;
    Ok(Json(settings(&app)))
}
