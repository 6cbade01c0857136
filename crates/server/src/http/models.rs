use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::ApiError;
use crate::v2::{model_config, statistics};

/// `{model}` and the optional `{version}` of a model route.
#[derive(Deserialize)]
pub struct ModelPath {
    pub model: String,
    #[serde(default)]
    pub version: Option<String>,
}

pub async fn metadata(
    State(app): State<AppState>,
    Path(p): Path<ModelPath>,
) -> Result<Json<Value>, ApiError> {
    let model = app.runtime.get(&p.model, p.version.as_deref())?;
    let versions = app.runtime.ready_versions(&p.model);
    Ok(Json(model_config::metadata(model.spec(), &versions)))
}

pub async fn config(
    State(app): State<AppState>,
    Path(p): Path<ModelPath>,
) -> Result<Json<Value>, ApiError> {
    let model = app.runtime.get(&p.model, p.version.as_deref())?;
    Ok(Json(model_config::config(model.spec())))
}

/// 200 when ready, 404 for an unknown model or version, 400 when it exists but cannot serve.
pub async fn ready(
    State(app): State<AppState>,
    Path(p): Path<ModelPath>,
) -> Result<Json<Value>, ApiError> {
    match app.runtime.get(&p.model, p.version.as_deref()) {
        Ok(model) => Ok(Json(
            json!({ "name": p.model, "version": model.spec().version.to_string(), "ready": true }),
        )),
        Err(e) if e.kind() == inferd_runtime::ErrorKind::Unavailable => {
            Err(ApiError::bad_request(e.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /v2/models/{m}[/versions/{v}]/stats`: the statistics extension for one model.
pub async fn stats(
    State(app): State<AppState>,
    Path(p): Path<ModelPath>,
) -> Result<Json<Value>, ApiError> {
    let rows = app
        .runtime
        .statistics(Some(&p.model), p.version.as_deref())?;
    Ok(Json(statistics::statistics(&rows)))
}

/// `GET /v2/models/stats`: every loaded model version.
pub async fn stats_all(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let rows = app.runtime.statistics(None, None)?;
    Ok(Json(statistics::statistics(&rows)))
}
