use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::models::ModelPath;
use super::{AppState, body};
use crate::ApiError;
use crate::telemetry::{self, Headers};
use crate::v2::{HEADER_LENGTH, decode, encode};

/// `POST /v2/models/{m}[/versions/{v}]/infer`, in a request span (its log lines carry the id)
/// and, when sampled, a trace with decode, route, queue, batch, backend and encode spans.
pub async fn infer(
    State(app): State<AppState>,
    Path(p): Path<ModelPath>,
    headers: HeaderMap,
    request_body: Body,
) -> Response {
    let started = Instant::now();
    let span = app.telemetry.request_span("http", &p.model);
    let trace = app.telemetry.trace("http", &p.model, &Headers(&headers));
    let mut id = None;
    let result = run(&app, &p, &headers, request_body, trace.as_ref(), &mut id)
        .instrument(span.clone())
        .await;
    let _entered = span.enter();
    // A request that failed before its id was read still gets one in the logs.
    let id = id.unwrap_or_else(|| app.telemetry.log_id(&span, ""));
    let (response, version) = match result {
        Ok((response, version)) => (response, version),
        Err(e) => (e.into_response(), String::new()),
    };
    app.telemetry.access(
        &id,
        &p.model,
        &version,
        response.status().as_str(),
        started.elapsed(),
    );
    response
}

async fn run(
    app: &AppState,
    p: &ModelPath,
    headers: &HeaderMap,
    request_body: Body,
    trace: Option<&tracing::Span>,
    id: &mut Option<String>,
) -> Result<(Response, String), ApiError> {
    let bytes = body::read(headers, request_body, app.config.max_message_bytes).await?;
    let header_length = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("Inference-Header-Content-Length must be a byte count")
                })?,
        ),
    };
    let model = telemetry::within(telemetry::child(trace, "route"), || {
        app.runtime.get(&p.model, p.version.as_deref())
    })?;
    let (mut request, format) = telemetry::within(telemetry::child(trace, "decode"), || {
        decode::request(&bytes, header_length)
    })?;
    *id = Some(app.telemetry.log_id(&tracing::Span::current(), &request.id));
    request.trace = trace.cloned();
    let response = model.infer(request).await?;
    let version = response.model_version.to_string();
    let encoded = telemetry::within(telemetry::child(trace, "encode"), || {
        encode::response(&response, &format)
    });
    Ok((encoded, version))
}
