//! The V1 REST routes (TF Serving, KServe V1) on the V2 port: `GET /v1/models` (KServe's list),
//! `GET /v1/models/{m}[/versions/{v}|/labels/{l}][/metadata]`, `POST ...:predict` through the
//! same pipeline as V2 (routing, auth, audit, metrics apply alike).

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use inferd_runtime::{Protocol, Target};
use serde_json::{Value, json};

use super::{AppState, body};
use crate::auth::Access;
use crate::pipeline::Decoded;
use crate::telemetry::Headers;
use crate::v1::{Action, V1Path, decode, encode, status};
use crate::{ApiError, shm::OutputRegions};

/// KServe V1's `GET /v1/models`: the names of the models that serve.
pub async fn list(State(app): State<AppState>) -> Json<Value> {
    let mut names: Vec<String> = app
        .runtime
        .index()
        .into_iter()
        .filter(|e| e.state == inferd_runtime::ModelState::Ready)
        .map(|e| e.name)
        .collect();
    names.dedup();
    Json(json!({ "models": names }))
}

pub async fn get(
    State(app): State<AppState>,
    Path(rest): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let path = V1Path::parse(&rest)?;
    let version = path.version.as_deref();
    match path.action {
        Action::Status => {
            let view = app.runtime.ready(&path.model, version)?;
            let versions = match version {
                Some(_) => vec![view.spec.version],
                None => view.versions.clone(),
            };
            Ok(Json(status::status(&path.model, &versions, true)))
        }
        Action::Metadata => {
            let view = app.runtime.describe(&path.model, version)?;
            Ok(Json(status::metadata(&view)))
        }
        Action::Predict => Err(ApiError::bad_request(
            ":predict takes a POST with the inputs in its body",
        )),
    }
}

pub async fn post(
    State(app): State<AppState>,
    Path(rest): Path<String>,
    request: Request,
) -> Response {
    let path = match V1Path::parse(&rest) {
        Ok(path) if path.action == Action::Predict => path,
        Ok(_) => {
            return ApiError::bad_request("POST is for :predict; status and metadata are GETs")
                .into_response();
        }
        Err(e) => return e.into_response(),
    };
    let target = Target::new(path.model.clone(), path.version.as_deref());
    let (parts, request_body) = request.into_parts();
    let decode = async {
        let view = app
            .runtime
            .describe(&path.model, path.version.as_deref())
            .map_err(ApiError::from)?;
        let body = body::read(request_body).await?;
        let (request, layout) = decode::request(&body, &view.spec.inputs)?;
        Ok(Decoded {
            request,
            id: String::new(),
            format: layout,
            shm: OutputRegions::default(),
        })
    };
    let access = parts.extensions.get::<Access>();
    app.pipeline
        .infer(
            Protocol::HttpV1,
            target,
            access,
            &Headers(&parts.headers),
            decode,
            |_, response, layout, _| encode::response(&response, layout),
        )
        .await
        .unwrap_or_else(IntoResponse::into_response)
}
