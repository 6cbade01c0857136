//! Log settings: Triton's fields (`log_info`, `log_warning`, `log_error`, `log_verbose_level`,
//! `log_format`, `log_file`), mapped onto one level, plus `log_level` in `EnvFilter` syntax and
//! the access log switch.

use serde::Deserialize;

use crate::{ApiError, Telemetry};

/// A setting's value, as Triton's gRPC `LogSettings` types them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    U32(u32),
    Text(String),
}

/// The settings in force, by name.
pub fn current(telemetry: &Telemetry) -> Vec<(&'static str, Value)> {
    let filter = telemetry
        .logs()
        .map_or_else(|| "unavailable".to_string(), |l| l.filter());
    let level = filter
        .split(',')
        .find(|d| !d.contains('='))
        .unwrap_or("info")
        .trim()
        .to_string();
    let at_least = |wanted: &[&str]| wanted.contains(&level.as_str());
    vec![
        ("log_level", Value::Text(filter.clone())),
        (
            "log_format",
            Value::Text(telemetry.logs().map_or("text", |l| l.format()).into()),
        ),
        ("log_file", Value::Text(String::new())),
        ("access_log", Value::Bool(telemetry.access_log().is_on())),
        (
            "log_info",
            Value::Bool(at_least(&["info", "debug", "trace"])),
        ),
        (
            "log_warning",
            Value::Bool(at_least(&["warn", "info", "debug", "trace"])),
        ),
        ("log_error", Value::Bool(!at_least(&["off"]))),
        (
            "log_verbose_level",
            Value::U32(match level.as_str() {
                "trace" => 2,
                "debug" => 1,
                _ => 0,
            }),
        ),
    ]
}

/// A change; absent fields stay as they are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    pub log_level: Option<String>,
    pub access_log: Option<bool>,
    pub log_info: Option<bool>,
    pub log_warning: Option<bool>,
    pub log_error: Option<bool>,
    pub log_verbose_level: Option<u32>,
    pub log_file: Option<String>,
    pub log_format: Option<String>,
}

impl Update {
    /// One setting by name, as gRPC sends them; refuses unknown names and wrong types.
    pub fn set(&mut self, name: &str, value: Value) -> Result<(), ApiError> {
        let wrong = |want: &str| {
            ApiError::bad_request(format!("log setting '{name}' takes a {want} value"))
        };
        let flag = |v: Value| match v {
            Value::Bool(b) => Ok(b),
            _ => Err(wrong("bool")),
        };
        let text = |v: Value| match v {
            Value::Text(t) => Ok(t),
            _ => Err(wrong("string")),
        };
        match name {
            "log_level" => self.log_level = Some(text(value)?),
            "log_format" => self.log_format = Some(text(value)?),
            "log_file" => self.log_file = Some(text(value)?),
            "access_log" => self.access_log = Some(flag(value)?),
            "log_info" => self.log_info = Some(flag(value)?),
            "log_warning" => self.log_warning = Some(flag(value)?),
            "log_error" => self.log_error = Some(flag(value)?),
            "log_verbose_level" => match value {
                Value::U32(v) => self.log_verbose_level = Some(v),
                _ => return Err(wrong("uint32")),
            },
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown log setting '{other}' (log_level, log_format, log_file, access_log, \
                     log_info, log_warning, log_error, log_verbose_level)"
                )));
            }
        }
        Ok(())
    }

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

    pub fn apply(&self, telemetry: &Telemetry) -> Result<(), ApiError> {
        if self.log_file.as_deref().is_some_and(|f| !f.is_empty()) {
            return Err(ApiError::bad_request(
                "log_file is not supported: inferd logs to stderr for the process supervisor",
            ));
        }
        let format = telemetry.logs().map_or("text", |l| l.format());
        if self.log_format.as_deref().is_some_and(|f| f != format) {
            return Err(ApiError::bad_request(
                "log_format is set at start (--log-format text|json)",
            ));
        }
        let level = self
            .log_level
            .clone()
            .or_else(|| self.triton_level().map(str::to_string));
        if let Some(level) = level {
            let logs = telemetry.logs().ok_or_else(|| {
                ApiError::bad_request("this server was started without run-time log control")
            })?;
            logs.set_filter(&level)
                .map_err(|e| ApiError::bad_request(format!("log_level '{level}': {e}")))?;
            tracing::info!(log_level = %level, "log level changed");
        }
        if let Some(on) = self.access_log {
            telemetry.access_log().set(on);
        }
        Ok(())
    }
}
