//! The HTTP side of [`Auth`]: a middleware naming each route's group and model.

use std::sync::Arc;

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Access, Auth, Denied, Need, endpoints};
use crate::listen::PeerInfo;

pub async fn layer(
    State(auth): State<Option<Arc<Auth>>>,
    route: Option<MatchedPath>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(auth) = auth else {
        request.extensions_mut().insert(Access::default());
        return next.run(request).await;
    };
    let group = route
        .as_ref()
        .and_then(|r| endpoints::http_group(request.method(), r.as_str()));
    let model = params.ok().and_then(|p| {
        p.iter()
            .find(|(name, _)| *name == "model")
            .map(|(_, value)| value.to_string())
    });
    let need = Need { group, model };
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let had_token = authorization.is_some();
    let peer = request.extensions().get::<PeerInfo>();
    match auth.admit(&need, authorization, peer).await {
        Ok(access) => {
            request.extensions_mut().insert(access);
            next.run(request).await
        }
        Err(denied) => refuse(&denied, had_token),
    }
}

fn refuse(denied: &Denied, had_token: bool) -> Response {
    let mut response = denied.api_error().into_response();
    let headers = response.headers_mut();
    match denied {
        Denied::Unauthenticated(_) => {
            let value = if had_token {
                "Bearer realm=\"inferd\", error=\"invalid_token\""
            } else {
                "Bearer realm=\"inferd\""
            };
            headers.insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static(value),
            );
        }
        Denied::RateLimited { .. } => {
            if let Some(secs) = denied.retry_after_secs() {
                headers.insert(http::header::RETRY_AFTER, secs.into());
            }
        }
        Denied::Forbidden { .. } => {}
    }
    response
}

/// The principal of a request, for handlers that record who changed something ("" when
/// authentication is off).
pub struct Caller(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Caller, Self::Rejection> {
        let id = parts
            .extensions
            .get::<Access>()
            .and_then(|a| a.principal.as_ref())
            .map(|p| p.id.clone())
            .unwrap_or_default();
        Ok(Caller(id))
    }
}
