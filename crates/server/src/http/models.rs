use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::ApiError;
use crate::model_info::{ModelConfiguration, ModelMetadata, Statistics};

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
) -> Result<Json<ModelMetadata>, ApiError> {
    let view = app.runtime.describe(&p.model, p.version.as_deref())?;
    Ok(Json(ModelMetadata::of(&view)))
}

pub async fn config(
    State(app): State<AppState>,
    Path(p): Path<ModelPath>,
) -> Result<Json<ModelConfiguration>, ApiError> {
    let view = app.runtime.describe(&p.model, p.version.as_deref())?;
    Ok(Json(ModelConfiguration::of(&view.spec)))
}

/// 200 when ready, 404 for an unknown model or version, 400 when it exists but cannot serve.
pub async fn ready(
    State(app): State<AppState>,
    Path(p): Path<ModelPath>,
) -> Result<Json<Value>, ApiError> {
    match app.runtime.ready(&p.model, p.version.as_deref()) {
        Ok(view) => Ok(Json(
            json!({ "name": p.model, "version": view.spec.version.to_string(), "ready": true }),
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
) -> Result<Json<Statistics>, ApiError> {
    let rows = app
        .runtime
        .statistics(Some(&p.model), p.version.as_deref())?;
    Ok(Json(Statistics::of(&rows)))
}

/// `GET /v2/models/stats`: every loaded model version.
pub async fn stats_all(State(app): State<AppState>) -> Result<Json<Statistics>, ApiError> {
    let rows = app.runtime.statistics(None, None)?;
    Ok(Json(Statistics::of(&rows)))
}
