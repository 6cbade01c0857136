//! The V2 REST front end (axum).

mod body;
mod error_shape;
mod fallback;
mod health;
mod infer;
mod limit;
mod logging;
mod models;
mod openapi;
mod repository;
mod shm;
mod streams;
mod trace;
mod traffic;
mod v1;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use inferd_runtime::Runtime;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;

use crate::auth::Auth;
use crate::pipeline::Pipeline;
use crate::{Metrics, ServerConfig, Telemetry};

#[derive(Clone)]
struct AppState {
    runtime: Arc<Runtime>,
    config: Arc<ServerConfig>,
    telemetry: Arc<Telemetry>,
    pipeline: Pipeline,
}

pub fn router(
    runtime: Arc<Runtime>,
    config: ServerConfig,
    metrics: Arc<Metrics>,
    telemetry: Arc<Telemetry>,
    auth: Option<Arc<Auth>>,
) -> Router {
    let limit = config.max_message_bytes;
    let state = AppState {
        pipeline: Pipeline {
            runtime: Arc::clone(&runtime),
            telemetry: Arc::clone(&telemetry),
        },
        runtime,
        config: Arc::new(config),
        telemetry,
    };
    Router::new()
        .route("/v2/models/stats", get(models::stats_all))
        .route("/v2/models/{model}/stats", get(models::stats))
        .route(
            "/v2/models/{model}/versions/{version}/stats",
            get(models::stats),
        )
        .route("/v2", get(health::server_metadata))
        .route("/v2/openapi.json", get(openapi::document))
        .route("/v2/health/live", get(health::live))
        .route("/v2/health/ready", get(health::ready))
        .route("/v2/models/{model}", get(models::metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(models::metadata),
        )
        .route("/v2/models/{model}/ready", get(models::ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(models::ready),
        )
        .route("/v2/models/{model}/config", get(models::config))
        .route(
            "/v2/models/{model}/versions/{version}/config",
            get(models::config),
        )
        .route("/v2/models/{model}/infer", post(infer::infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(infer::infer),
        )
        .route("/v2/models/{model}/aliases", get(traffic::aliases))
        .route(
            "/v2/models/{model}/aliases/{alias}",
            axum::routing::put(traffic::put_alias).delete(traffic::delete_alias),
        )
        .route(
            "/v2/models/{model}/traffic",
            get(traffic::traffic).put(traffic::put_traffic),
        )
        .route(
            "/v2/models/{model}/rollout",
            get(traffic::rollout).post(traffic::start_rollout),
        )
        .route("/v2/models/{model}/rollout/{action}", post(traffic::act))
        .route("/v2/models/{model}/history", get(traffic::history))
        .route("/v2/logging", get(logging::get).post(logging::post))
        .route("/v2/trace/setting", get(trace::get).post(trace::post))
        .route(
            "/v2/models/{model}/trace/setting",
            get(trace::get_model).post(trace::post_model),
        )
        .route("/v2/systemsharedmemory/status", get(shm::status))
        .route(
            "/v2/systemsharedmemory/region/{name}/status",
            get(shm::region_status),
        )
        .route(
            "/v2/systemsharedmemory/region/{name}/register",
            post(shm::register),
        )
        .route(
            "/v2/systemsharedmemory/region/{name}/unregister",
            post(shm::unregister),
        )
        .route(
            "/v2/systemsharedmemory/unregister",
            post(shm::unregister_all),
        )
        .route("/v2/cudasharedmemory/status", get(shm::cuda))
        .route(
            "/v2/cudasharedmemory/{*rest}",
            get(shm::cuda).post(shm::cuda),
        )
        .route("/v2/streams", get(streams::list))
        // TF Serving / KServe V1 (their verbs follow a colon in the last segment).
        .route("/v1/models", get(v1::list))
        .route("/v1/models/{*rest}", get(v1::get).post(v1::post))
        .route("/v2/repository/index", post(repository::index))
        .route("/v2/repository/models/{model}/load", post(repository::load))
        .route(
            "/v2/repository/models/{model}/unload",
            post(repository::unload),
        )
        .fallback(fallback::unknown_route)
        .method_not_allowed_fallback(fallback::wrong_method)
        // The limit layer caps bodies; readers answer 413 in the protocol's shape.
        .layer(middleware::from_fn_with_state(limit, limit::cap_body))
        // Outside the cap, so the cap counts what a gzip or deflate body inflates to.
        .layer(RequestDecompressionLayer::new().gzip(true).deflate(true))
        // What the layers and extractors inside refuse gets the protocol's error shape.
        .layer(middleware::from_fn(error_shape::json_errors))
        .layer(DefaultBodyLimit::disable())
        // Answers compressed when the client accepts it (Accept-Encoding), as Triton does.
        .layer(CompressionLayer::new().gzip(true).deflate(true))
        // Before anything reads the body; refusals are still counted.
        .layer(middleware::from_fn_with_state(
            auth,
            crate::auth::http::layer,
        ))
        .layer(middleware::from_fn_with_state(metrics, count))
        .with_state(state)
}

/// Counts every answered request by method, route template (not the raw path: model names
/// would make the label set unbounded) and status.
async fn count(
    State(metrics): State<Arc<Metrics>>,
    route: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    metrics.http_request(method.as_str(), route, response.status());
    response
}
