//! Trace settings: Triton's trace extension (`trace_level`, `trace_rate`, `trace_count`,
//! `log_frequency`, `trace_file`, `trace_mode`) mapped onto inferd's OTLP sampling. Levels
//! `TIMESTAMPS` (spans carry timestamps) or `OFF`; `trace_rate` N samples one request in N
//! (requests whose caller samples them are traced whatever the settings). Settings are
//! server-wide: a model's settings are the server's.

use crate::{ApiError, Telemetry};

/// The settings in force: each a list of strings, as Triton's gRPC `TraceSetting` has them.
pub fn current(telemetry: &Telemetry) -> Vec<(&'static str, Vec<String>)> {
    let (on, rate) = telemetry.trace_rate();
    // Without an exporter nothing is traced, whatever the sampling says: the answer says OFF,
    // so that a client posting back what it read is not refused.
    let on = on && telemetry.exports_traces();
    let one = |s: &str| vec![s.to_string()];
    vec![
        ("trace_level", one(if on { "TIMESTAMPS" } else { "OFF" })),
        ("trace_rate", one(&rate.to_string())),
        ("trace_count", one("-1")),
        ("log_frequency", one("0")),
        ("trace_file", one("")),
        ("trace_mode", one("opentelemetry")),
    ]
}

/// Applies `updates` (name, values; no values = leave it as it is) to the server-wide
/// settings. `model`: the model a client addressed, refused unless empty.
pub fn apply(
    telemetry: &Telemetry,
    model: Option<&str>,
    updates: &[(String, Vec<String>)],
) -> Result<(), ApiError> {
    if updates.is_empty() {
        return Ok(());
    }
    if let Some(model) = model.filter(|m| !m.is_empty()) {
        return Err(ApiError::bad_request(format!(
            "trace settings are server-wide in inferd; change them without a model (not for \
             '{model}')"
        )));
    }
    let (mut on, mut rate) = telemetry.trace_rate();
    for (name, values) in updates {
        let Some(value) = values.first().map(String::as_str) else {
            continue;
        };
        let only = |allowed: &str, why: &str| {
            if value == allowed && values.len() == 1 {
                Ok(())
            } else {
                Err(ApiError::bad_request(format!(
                    "trace setting {name} = {values:?}: only \"{allowed}\" ({why})"
                )))
            }
        };
        match name.as_str() {
            "trace_level" => {
                on = match values.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                    ["OFF"] => false,
                    ["TIMESTAMPS"] => true,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "trace_level {values:?}: [\"TIMESTAMPS\"] or [\"OFF\"] (spans carry \
                             timestamps, not tensors)"
                        )));
                    }
                }
            }
            "trace_rate" => {
                rate = value.parse().ok().filter(|r| *r >= 1).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "trace_rate = {value:?}: a whole number of at least 1 (one request in N)"
                    ))
                })?
            }
            "trace_count" => only("-1", "no limit; sampling is by rate")?,
            "log_frequency" => only("0", "spans are exported over OTLP as they end")?,
            "trace_file" => only("", "traces go to the OTLP endpoint, --otlp-endpoint")?,
            "trace_mode" => only("opentelemetry", "inferd exports OpenTelemetry traces")?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown trace setting '{other}' (trace_level, trace_rate, trace_count, \
                     log_frequency, trace_file, trace_mode)"
                )));
            }
        }
    }
    if on && !telemetry.exports_traces() {
        return Err(ApiError::bad_request(
            "this server exports no traces: start it with --otlp-endpoint",
        ));
    }
    telemetry.set_trace_rate(on, rate);
    tracing::info!(on, rate, "trace settings changed");
    Ok(())
}
