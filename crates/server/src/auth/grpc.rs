//! The gRPC side of [`Auth`]: a tower layer on tonic's server. The method names the group;
//! ModelMetadata's model is read from its (small) message; inference's model is checked by
//! the router, as the message is only decoded in the handler.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use prost::Message;
use tonic::body::Body as TonicBody;

use super::{Access, Auth, Denied, Need, endpoints, scope::Group};
use crate::listen::PeerInfo;
use crate::pb;

/// ModelMetadata requests larger than this are not read for their model name (refused).
const PEEK_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct AuthLayer {
    auth: Option<Arc<Auth>>,
}

impl AuthLayer {
    pub fn new(auth: Option<Arc<Auth>>) -> Self {
        AuthLayer { auth }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Option<Arc<Auth>>,
}

/// A gRPC error response with `status`, as a tonic handler would answer.
fn refuse(denied: &Denied) -> http::Response<TonicBody> {
    let mut status = tonic::Status::from(denied.api_error());
    if let Some(secs) = denied.retry_after_secs()
        && let Ok(value) = secs.to_string().parse()
    {
        status.metadata_mut().insert("retry-after", value);
    }
    status.into_http()
}

/// The message of a unary gRPC body: past the 5-byte prefix, uncompressed only.
fn unary_message(body: &[u8]) -> Option<&[u8]> {
    let (prefix, rest) = body.split_at_checked(5)?;
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    (prefix[0] == 0).then(|| rest.get(..len)).flatten()
}

impl<S> tower_service::Service<http::Request<TonicBody>> for AuthService<S>
where
    S: tower_service::Service<http::Request<TonicBody>, Response = http::Response<TonicBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<TonicBody>) -> Self::Future {
        // The ready service goes with this call; a fresh clone stays for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(auth) = self.auth.clone() else {
            request.extensions_mut().insert(Access::default());
            return Box::pin(inner.call(request));
        };
        Box::pin(async move {
            let group = endpoints::grpc_group(request.uri().path());
            let mut need = Need { group, model: None };
            if group == Some(Group::Metadata) && request.uri().path().ends_with("/ModelMetadata") {
                let (parts, body) = request.into_parts();
                let bytes = match http_body_util::Limited::new(body, PEEK_LIMIT)
                    .collect()
                    .await
                {
                    Ok(collected) => collected.to_bytes(),
                    Err(_) => Bytes::new(),
                };
                need.model = unary_message(&bytes)
                    .and_then(|m| pb::ModelMetadataRequest::decode(m).ok())
                    .map(|m| m.name);
                request = http::Request::from_parts(
                    parts,
                    TonicBody::new(http_body_util::Full::new(bytes)),
                );
            }
            let authorization = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let peer = request.extensions().get::<PeerInfo>();
            match auth.admit(&need, authorization, peer).await {
                Ok(access) => {
                    request.extensions_mut().insert(access);
                    inner.call(request).await
                }
                Err(denied) => Ok(refuse(&denied)),
            }
        })
    }
}
