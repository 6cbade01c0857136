//! inferd's rollout API: version aliases, traffic policies, canary rollouts and the change
//! history (DESIGN.md section 5).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use inferd_core::{ArmTarget, TrafficPolicy};
use inferd_runtime::{RolloutAction, RolloutPlan};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, body};
use crate::ApiError;
use crate::auth::http::Caller;

async fn json_body<T: for<'de> Deserialize<'de>>(request: Body, what: &str) -> Result<T, ApiError> {
    let bytes = body::read(request).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed {what} JSON: {e}")))
}

fn aliases_json(aliases: std::collections::BTreeMap<String, u64>) -> Value {
    let map: serde_json::Map<String, Value> = aliases
        .into_iter()
        .map(|(k, v)| (k, json!(v.to_string())))
        .collect();
    json!({ "aliases": map })
}

pub async fn aliases(
    State(app): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(aliases_json(app.runtime.aliases(&model)?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasTarget {
    version: Value,
}

#[derive(Deserialize)]
pub struct AliasPath {
    model: String,
    alias: String,
}

pub async fn put_alias(
    State(app): State<AppState>,
    Caller(caller): Caller,
    Path(p): Path<AliasPath>,
    request: Body,
) -> Result<Json<Value>, ApiError> {
    let target: AliasTarget = json_body(request, "alias").await?;
    let version = match target.version {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        other => {
            return Err(ApiError::bad_request(format!(
                "\"version\" must be a version number as a string, not {other}"
            )));
        }
    };
    app.runtime
        .set_alias(&p.model, &p.alias, &version, &caller)
        .await?;
    Ok(Json(aliases_json(app.runtime.aliases(&p.model)?)))
}

pub async fn delete_alias(
    State(app): State<AppState>,
    Caller(caller): Caller,
    Path(p): Path<AliasPath>,
) -> Result<Json<Value>, ApiError> {
    app.runtime
        .delete_alias(&p.model, &p.alias, &caller)
        .await?;
    Ok(Json(aliases_json(app.runtime.aliases(&p.model)?)))
}

/// The policy in force, where it comes from, which arms can serve, and the shadows' figures.
fn traffic_json(app: &AppState, model: &str) -> Result<Value, ApiError> {
    let (policy, source) = app.runtime.traffic(model)?;
    let ready = app.runtime.ready_versions(model);
    let arms: Vec<Value> = policy
        .arms()
        .unwrap_or_default()
        .into_iter()
        .map(|(target, share)| {
            let (key, name, serving) = match &target {
                ArmTarget::Version(v) => ("version", v.to_string(), ready.contains(v)),
                ArmTarget::Model(m) => ("model", m.clone(), app.runtime.describe(m, None).is_ok()),
            };
            let mut arm = json!({ key: name, "share": share, "ready": serving });
            if !serving {
                arm["note"] = json!("not ready: gets no traffic, its share goes to the other arms");
            }
            arm
        })
        .collect();
    let mut out = serde_json::to_value(&policy).unwrap_or_else(|_| json!({}));
    out["source"] = json!(source);
    out["arms"] = json!(arms);
    out["shadow_figures"] = json!(app.runtime.shadow_figures(model));
    Ok(out)
}

pub async fn traffic(
    State(app): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(traffic_json(&app, &model)?))
}

pub async fn put_traffic(
    State(app): State<AppState>,
    Caller(caller): Caller,
    Path(model): Path<String>,
    request: Body,
) -> Result<Json<Value>, ApiError> {
    let policy: TrafficPolicy = json_body(request, "traffic policy").await?;
    app.runtime.set_traffic(&model, policy, &caller).await?;
    Ok(Json(traffic_json(&app, &model)?))
}

pub async fn start_rollout(
    State(app): State<AppState>,
    Caller(caller): Caller,
    Path(model): Path<String>,
    request: Body,
) -> Result<Json<Value>, ApiError> {
    let plan: RolloutPlan = json_body(request, "rollout").await?;
    app.runtime.start_rollout(&model, plan, &caller).await?;
    rollout(State(app), Path(model)).await
}

pub async fn rollout(
    State(app): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match app.runtime.rollout(&model)? {
        Some(view) => Ok(Json(serde_json::to_value(view).unwrap_or_default())),
        None => Err(ApiError::new(
            inferd_runtime::ErrorKind::NotFound,
            format!("model '{model}' has no rollout"),
        )),
    }
}

#[derive(Deserialize)]
pub struct ActionPath {
    model: String,
    action: String,
}

pub async fn act(
    State(app): State<AppState>,
    Caller(caller): Caller,
    Path(p): Path<ActionPath>,
) -> Result<Json<Value>, ApiError> {
    let action = match p.action.as_str() {
        "promote" => RolloutAction::Promote,
        "rollback" => RolloutAction::Rollback,
        "pause" => RolloutAction::Pause,
        "resume" => RolloutAction::Resume,
        other => {
            return Err(ApiError::new(
                inferd_runtime::ErrorKind::NotFound,
                format!("no rollout action '{other}': promote, rollback, pause or resume"),
            ));
        }
    };
    app.runtime
        .act_on_rollout(&p.model, action, &caller)
        .await?;
    rollout(State(app), Path(p.model)).await
}

pub async fn history(
    State(app): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let history = app.runtime.history(&model).await?;
    Ok(Json(json!({ "model": model, "history": history })))
}
