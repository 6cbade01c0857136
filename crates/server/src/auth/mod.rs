//! Authentication and authorization, once for every front end: the HTTP and gRPC layers
//! ([`http`], [`grpc`]) name the endpoint's group (and model, where the request names it
//! outside the body) and call [`Auth::admit`]; inference's model check happens in the router,
//! from the grant [`Access::apply`] puts on the request's context.

pub mod endpoints;
pub mod grpc;
pub mod http;
pub mod jwt;
pub mod keys;
pub mod quota;
pub mod scope;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use inferd_runtime::{ErrorKind, RequestContext};
use prometheus::IntCounterVec;

use crate::ApiError;
use crate::listen::PeerInfo;
pub use jwt::JwtSettings;
pub use keys::{Identity, KeyFile};
pub use scope::{Group, Scopes};

/// How authentication is set up (`inferd serve --auth ...`).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub keys_file: Option<PathBuf>,
    pub jwt: Option<JwtSettings>,
    /// Groups open to callers without credentials.
    pub public: BTreeSet<Group>,
}

/// What an endpoint needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// `None`: any authenticated caller (an unknown endpoint, answered 404 once admitted).
    pub group: Option<Group>,
    /// The model, when the request names it before its body.
    pub model: Option<String>,
}

/// Who a request is from, for the handlers and the runtime; on every admitted request.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub principal: Option<Arc<Identity>>,
    /// A part of this server that makes requests of its own (a stream consumer,
    /// `stream:<name>`): the principal of its requests, with no model restriction.
    pub service: Option<String>,
}

impl Access {
    /// Puts the principal and the models it may run on the request's context.
    pub fn apply(&self, context: &mut RequestContext) {
        if let Some(p) = &self.principal {
            context.principal = p.id.clone();
            context.grant = Some(Arc::new(p.scopes.grant(Group::Inference)));
        } else if let Some(service) = &self.service {
            context.principal = service.clone();
        }
    }
}

/// Why a request is refused. Messages never contain a secret.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Denied {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("'{principal}' lacks scope {scope}")]
    Forbidden { principal: String, scope: String },
    #[error("'{principal}' is over its request rate; retry in {} ms", retry_after.as_millis())]
    RateLimited {
        principal: String,
        retry_after: Duration,
    },
}

impl Denied {
    pub fn api_error(&self) -> ApiError {
        let kind = match self {
            Denied::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Denied::Forbidden { .. } => ErrorKind::PermissionDenied,
            Denied::RateLimited { .. } => ErrorKind::RateLimited,
        };
        ApiError::new(kind, self.to_string())
    }

    /// Whole seconds for `Retry-After`, at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Denied::RateLimited { retry_after, .. } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            _ => None,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Denied::Unauthenticated(_) => "unauthenticated",
            Denied::Forbidden { .. } => "forbidden",
            Denied::RateLimited { .. } => "rate_limited",
        }
    }
}

pub struct Auth {
    keys_path: Option<PathBuf>,
    keys: RwLock<Arc<KeyFile>>,
    jwt: Option<jwt::Jwt>,
    public: BTreeSet<Group>,
    quotas: quota::Quotas,
    denied: IntCounterVec,
}

impl Auth {
    /// Reads the key file (an error stops the server: it must not start open by mistake).
    pub fn new(settings: AuthSettings, registry: &prometheus::Registry) -> Result<Auth, String> {
        if settings.keys_file.is_none() && settings.jwt.is_none() {
            return Err(
                "--auth needs --auth-keys FILE or --auth-jwks-url URL (or both)".to_string(),
            );
        }
        let keys = match &settings.keys_file {
            Some(path) => KeyFile::read(path)?,
            None => KeyFile::default(),
        };
        let jwt = settings.jwt.map(jwt::Jwt::new).transpose()?;
        let denied = IntCounterVec::new(
            prometheus::Opts::new(
                "inferd_auth_denied_total",
                "Requests refused by authentication (unauthenticated), scopes (forbidden) or \
                 quotas (rate_limited)",
            ),
            &["reason", "principal"],
        )
        .map_err(|e| e.to_string())?;
        registry
            .register(Box::new(denied.clone()))
            .map_err(|e| e.to_string())?;
        Ok(Auth {
            keys_path: settings.keys_file,
            keys: RwLock::new(Arc::new(keys)),
            jwt,
            public: settings.public,
            quotas: quota::Quotas::default(),
            denied,
        })
    }

    fn keys(&self) -> Arc<KeyFile> {
        Arc::clone(&self.keys.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Re-reads the key file when its bytes changed, and the JWKS every `jwks_every`, until the
    /// process ends; a broken file keeps the previous keys (and says so).
    pub async fn watch(self: Arc<Self>, every: Duration, jwks_every: Duration) {
        let mut last = self.keys_path.as_ref().and_then(|p| std::fs::read(p).ok());
        if let Some(jwt) = &self.jwt
            && let Err(e) = jwt.refresh().await
        {
            tracing::warn!("{e} (retried when a token arrives)");
        }
        let mut jwks_due = tokio::time::Instant::now() + jwks_every;
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Some(path) = &self.keys_path {
                let now = std::fs::read(path).ok();
                if now != last {
                    match KeyFile::read(path) {
                        Ok(file) => {
                            tracing::info!(
                                entries = file.entries(),
                                "key file {} re-read",
                                path.display()
                            );
                            *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(file);
                        }
                        Err(e) => tracing::error!("{e}; the previous keys stay in force"),
                    }
                    last = now;
                }
            }
            if let Some(jwt) = &self.jwt
                && tokio::time::Instant::now() >= jwks_due
            {
                jwks_due = tokio::time::Instant::now() + jwks_every;
                if let Err(e) = jwt.refresh().await {
                    tracing::warn!("{e}; the cached keys stay in force");
                }
            }
        }
    }

    async fn identify(
        &self,
        bearer: Option<&str>,
        peer: Option<&PeerInfo>,
    ) -> Result<Option<Identity>, Denied> {
        if let Some(token) = bearer {
            if token.starts_with(keys::KEY_PREFIX) {
                return self
                    .keys()
                    .check(token, SystemTime::now())
                    .map(|i| Some(i.clone()))
                    .map_err(|e| Denied::Unauthenticated(e.to_string()));
            }
            return match &self.jwt {
                Some(jwt) => jwt
                    .check(token)
                    .await
                    .map(Some)
                    .map_err(|e| Denied::Unauthenticated(e.to_string())),
                None => Err(Denied::Unauthenticated(
                    "not an inferd API key (ik.<id>.<secret>), and JWTs are not accepted here \
                     (no --auth-jwks-url)"
                        .to_string(),
                )),
            };
        }
        let subject = peer.and_then(|p| p.subject.as_deref());
        Ok(subject.and_then(|s| self.keys().subject(s).cloned()))
    }

    /// Decides a request: who sent it, whether its scopes cover `need`, whether its quota has
    /// room. `authorization` is the `Authorization` header's (or metadata's) value.
    pub async fn admit(
        &self,
        need: &Need,
        authorization: Option<&str>,
        peer: Option<&PeerInfo>,
    ) -> Result<Access, Denied> {
        let decided = self.decide(need, authorization, peer).await;
        if let Err(denied) = &decided {
            let principal = match denied {
                Denied::Forbidden { principal, .. } | Denied::RateLimited { principal, .. } => {
                    principal.as_str()
                }
                Denied::Unauthenticated(_) => "",
            };
            self.denied
                .with_label_values(&[denied.reason(), principal])
                .inc();
        }
        decided
    }

    async fn decide(
        &self,
        need: &Need,
        authorization: Option<&str>,
        peer: Option<&PeerInfo>,
    ) -> Result<Access, Denied> {
        let public = need.group.is_some_and(|g| self.public.contains(&g));
        let bearer = match authorization {
            None => None,
            Some(value) => match bearer_token(value) {
                Some(token) => Some(token),
                None if public => None,
                None => {
                    return Err(Denied::Unauthenticated(
                        "the Authorization header must be 'Bearer <API key or JWT>'".to_string(),
                    ));
                }
            },
        };
        let identity = match self.identify(bearer, peer).await {
            Ok(identity) => identity,
            // Public endpoints answer whoever asks, bad credentials or not.
            Err(_) if public => None,
            Err(denied) => return Err(denied),
        };
        let Some(identity) = identity else {
            if public {
                return Ok(Access::default());
            }
            return Err(Denied::Unauthenticated(
                "missing credentials: send 'Authorization: Bearer <API key or JWT>'".to_string(),
            ));
        };
        if !public && let Some(group) = need.group {
            let allowed = match (&need.model, group) {
                // The router checks the model of an inference (gRPC names it in the body).
                (_, Group::Inference) => identity.scopes.touches(group),
                (Some(model), g) => identity.scopes.allows(g, Some(model)),
                (None, g) => identity.scopes.has(g),
            };
            if !allowed {
                let scope = match (&need.model, group.per_model()) {
                    (Some(model), true) => format!("{group}:{model}"),
                    _ => group.to_string(),
                };
                return Err(Denied::Forbidden {
                    principal: identity.id,
                    scope,
                });
            }
        }
        if let Some(rate) = identity.rate
            && let Err(wait) = self.quotas.take(&identity.id, rate)
        {
            return Err(Denied::RateLimited {
                principal: identity.id,
                retry_after: wait,
            });
        }
        Ok(Access {
            principal: Some(Arc::new(identity)),
            service: None,
        })
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, as RFC 7235 says).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests;
