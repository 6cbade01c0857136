//! `GET /v2/streams`: the stream consumers of this server, their state, lag, rates and last
//! error (an empty list when none is configured).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

pub async fn list(State(app): State<AppState>) -> Json<Value> {
    Json(match &app.config.streams {
        Some(view) => view.status(),
        None => json!({ "streams": [] }),
    })
}
