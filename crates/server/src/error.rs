//! The front ends' one error type, and the one place where error kinds become HTTP status codes
//! and gRPC codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use inferd_runtime::{ErrorKind, RuntimeError};

/// An error answered in the protocol's shape: `{"error": "<message>"}` with a status code over
/// HTTP, a status with the message over gRPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::InvalidArgument, message)
    }

    /// The same error, its message prefixed with what it is about (`input 'x'`).
    pub fn about(self, what: &str) -> ApiError {
        ApiError {
            kind: self.kind,
            message: format!("{what}: {}", self.message),
        }
    }

    pub fn status(&self) -> StatusCode {
        status_of(self.kind)
    }
}

/// HTTP status of an error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
    }
}

/// gRPC code of an error kind.
pub fn grpc_code_of(kind: ErrorKind) -> tonic::Code {
    match kind {
        ErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
        ErrorKind::NotFound => tonic::Code::NotFound,
        ErrorKind::Unavailable => tonic::Code::Unavailable,
        ErrorKind::TooLarge => tonic::Code::ResourceExhausted,
        ErrorKind::Internal => tonic::Code::Internal,
        ErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
        ErrorKind::PermissionDenied => tonic::Code::PermissionDenied,
        ErrorKind::RateLimited => tonic::Code::ResourceExhausted,
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> ApiError {
        ApiError::new(e.kind(), e.to_string())
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> tonic::Status {
        tonic::Status::new(grpc_code_of(e.kind), e.message)
    }
}

/// gRPC status of a runtime error.
pub fn grpc_status(e: &RuntimeError) -> tonic::Status {
    tonic::Status::new(grpc_code_of(e.kind()), e.to_string())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), "{}", self.message);
        } else {
            tracing::debug!(status = status.as_u16(), "{}", self.message);
        }
        (
            status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}
