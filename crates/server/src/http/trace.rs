//! `GET`/`POST /v2[/models/{model}]/trace/setting`: the trace settings
//! (crate::settings::trace) as Triton's JSON: `trace_level` a list, the others strings.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use serde_json::{Map, Value};

use super::{AppState, body};
use crate::ApiError;
use crate::settings::trace;

fn settings(app: &AppState) -> Value {
    let map: Map<String, Value> = trace::current(&app.telemetry)
        .into_iter()
        .map(|(name, mut values)| {
            let value = if name == "trace_level" {
                Value::from(values)
            } else {
                Value::from(values.pop().unwrap_or_default())
            };
            (name.to_string(), value)
        })
        .collect();
    Value::Object(map)
}

pub async fn get(State(app): State<AppState>) -> Json<Value> {
    Json(settings(&app))
}

pub async fn get_model(State(app): State<AppState>, Path(_model): Path<String>) -> Json<Value> {
    Json(settings(&app))
}

async fn update(app: &AppState, model: Option<&str>, request_body: Body) -> Result<(), ApiError> {
    let body = body::read(request_body).await?;
    let fields: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed trace settings JSON: {e}")))?;
    let updates = fields
        .into_iter()
        .map(|(name, value)| {
            let values = match value {
                // null: Triton's "back to the default"; here, unchanged.
                Value::Null => Vec::new(),
                Value::String(s) => vec![s],
                Value::Number(n) => vec![n.to_string()],
                Value::Array(items) => items
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s),
                        other => Err(other.to_string()),
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|v| {
                        ApiError::bad_request(format!("trace setting {name}: {v} is not a string"))
                    })?,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "trace setting {name} = {other}: a string or a list of strings"
                    )));
                }
            };
            Ok((name, values))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    trace::apply(&app.telemetry, model, &updates)
}

pub async fn post(
    State(app): State<AppState>,
    request_body: Body,
) -> Result<Json<Value>, ApiError> {
    update(&app, None, request_body).await?;
    Ok(Json(settings(&app)))
}

pub async fn post_model(
    State(app): State<AppState>,
    Path(model): Path<String>,
    request_body: Body,
) -> Result<Json<Value>, ApiError> {
    update(&app, Some(&model), request_body).await?;
    Ok(Json(settings(&app)))
}
