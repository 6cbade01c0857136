//! Unknown routes and methods answer the protocol's JSON error body (clients show its message;
//! an empty 404 reads as "empty response").

use axum::Json;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::ApiError;

pub async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        inferd_runtime::ErrorKind::NotFound,
        format!(
            "no such endpoint: {method} {} (the V2 API is under /v2, see /v2 for the server's \
             extensions)",
            uri.path()
        ),
    )
}

pub async fn wrong_method(method: Method, uri: Uri) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(serde_json::json!({
            "error": format!("{} does not take {method}", uri.path())
        })),
    )
        .into_response()
}
