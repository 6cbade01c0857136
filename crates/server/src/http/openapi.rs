//! `GET /v2/openapi.json`: the OpenAPI 3 description of every REST endpoint (V2, V1 and
//! inferd's own), for gateways, client generators and API-testing tools. The document is
//! docs/openapi.json, built into the binary.

use axum::http::header;
use axum::response::IntoResponse;

const DOCUMENT: &str = include_str!("../../../../docs/openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
