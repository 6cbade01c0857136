//! `POST /v2/models/{m}[/versions/{v}]/infer`: decode → `runtime.infer` → encode.

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use inferd_runtime::{Protocol, Target};

use super::models::ModelPath;
use super::{AppState, body};
use crate::ApiError;
use crate::auth::Access;
use crate::telemetry::Headers;
use crate::v2::{HEADER_LENGTH, decode, encode};

pub async fn infer(
    State(app): State<AppState>,
    Path(p): Path<ModelPath>,
    request: Request,
) -> Response {
    let target = Target::new(p.model, p.version.as_deref());
    let (parts, request_body) = request.into_parts();
    let headers = &parts.headers;
    let decode = async {
        let header_length = match headers.get(HEADER_LENGTH) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<usize>().ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "Inference-Header-Content-Length must be a byte count",
                        )
                    })?,
            ),
        };
        let frames = body::frames(request_body).await?;
        decode::request_using(&frames, header_length, Some(&app.config.shared_memory))
    };
    let access = parts.extensions.get::<Access>();
    app.pipeline
        .infer(
            Protocol::Http,
            target,
            access,
            &Headers(headers),
            decode,
            |context, response, format, shm| encode::response(context, &response, &format, shm),
        )
        .await
        .unwrap_or_else(IntoResponse::into_response)
}
