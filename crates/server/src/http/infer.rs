use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::models::ModelPath;
use super::{AppState, body};
use crate::ApiError;
use crate::v2::{HEADER_LENGTH, decode, encode};

pub async fn infer(
    State(app): State<AppState>,
    Path(p): Path<ModelPath>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    let bytes = body::read(&headers, request_body, app.config.max_message_bytes).await?;
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
    let model = app.runtime.get(&p.model, p.version.as_deref())?;
    let (request, format) = decode::request(&bytes, header_length)?;
    let response = model.infer(request).await?;
    Ok(encode::response(&response, &format))
}
