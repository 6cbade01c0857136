//! `GET`/`POST /v2/logging`: the log settings, changed at run time (Triton's logging extension,
//! plus `log_level` in `EnvFilter` syntax and the access log switch).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, body};
use crate::ApiError;

fn settings(app: &AppState) -> Value {
    let filter = app
        .telemetry
        .logs()
        .map_or_else(|| "unavailable".to_string(), |l| l.filter());
    let level = filter
        .split(',')
        .find(|d| !d.contains('='))
        .unwrap_or("info")
        .trim();
    let at_least = |wanted: &[&str]| wanted.contains(&level);
    json!({
        "log_level": filter,
        "log_format": app.telemetry.logs().map_or("text", |l| l.format()),
        "access_log": app.telemetry.access_log().is_on(),
        "log_info": at_least(&["info", "debug", "trace"]),
        "log_warning": at_least(&["warn", "info", "debug", "trace"]),
        "log_error": !at_least(&["off"]),
        "log_verbose_level": match level { "trace" => 2, "debug" => 1, _ => 0 },
    })
}

pub async fn get(State(app): State<AppState>) -> Json<Value> {
    Json(settings(&app))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    log_level: Option<String>,
    access_log: Option<bool>,
    // Triton's fields, mapped onto a level.
    log_info: Option<bool>,
    log_warning: Option<bool>,
    log_error: Option<bool>,
    log_verbose_level: Option<u32>,
    log_file: Option<String>,
    log_format: Option<String>,
}

impl Update {
    /// The level Triton's switches amount to, when any is given.
    fn triton_level(&self) -> Option<&'static str> {
        if self.log_info.is_none()
            && self.log_warning.is_none()
            && self.log_error.is_none()
            && self.log_verbose_level.is_none()
        {
            return None;
        }
        Some(match self.log_verbose_level {
            Some(v) if v >= 2 => "trace",
            Some(1) => "debug",
            _ if self.log_info != Some(false) => "info",
            _ if self.log_warning != Some(false) => "warn",
            _ if self.log_error != Some(false) => "error",
            _ => "off",
        })
    }
}

pub async fn post(
    State(app): State<AppState>,
    request_body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body::read(request_body).await?;
    let update: Update = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed logging settings JSON: {e}")))?;
    if update.log_file.as_deref().is_some_and(|f| !f.is_empty()) {
        return Err(ApiError::bad_request(
            "log_file is not supported: inferd logs to stderr for the process supervisor",
        ));
    }
    if update.log_format.is_some() {
        return Err(ApiError::bad_request(
            "log_format is set at start (--log-format text|json)",
        ));
    }
    let level = update
        .log_level
        .clone()
        .or_else(|| update.triton_level().map(str::to_string));
    if let Some(level) = level {
        let logs = app.telemetry.logs().ok_or_else(|| {
            ApiError::bad_request("this server was started without run-time log control")
        })?;
        logs.set_filter(&level)
            .map_err(|e| ApiError::bad_request(format!("log_level '{level}': {e}")))?;
        tracing::info!(log_level = %level, "log level changed");
    }
    if let Some(on) = update.access_log {
        app.telemetry.access_log().set(on);
    }
    Ok(Json(settings(&app)))
}
