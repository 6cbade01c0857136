//! Which version answers a request. A version or alias the caller named; else the model's
//! traffic policy (a rollout's split, the API's, config.toml's): a weighted split, sticky by a
//! key when the policy names one; else the `production` alias; else the highest ready version.
//! Shadow copies are chosen here too. The chosen load is held for the request's lifetime, so a
//! swap or unload meanwhile lets it finish where it started. Metadata, configuration and
//! statistics use their own lookup ([`Runtime::describe`]): a policy never changes what they
//! report.

use std::cell::Cell;
use std::sync::Arc;

use crate::policy::{ArmTarget, PRODUCTION, key_point, pick};
use crate::registry::ModelEntry;
use crate::traffic::{PolicySource, resolve};
use crate::{InferRequest, Parameter, RequestContext, Runtime, RuntimeError, ServedModel, Target};

/// How the router chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKind {
    /// The caller named the version.
    Explicit,
    /// The caller named an alias.
    Alias(String),
    /// An arm of the traffic split (of a rollout when `rollout`).
    Split { rollout: bool },
    /// The `production` alias.
    Production,
    /// The highest ready version.
    Latest,
}

impl RouteKind {
    pub fn as_str(&self) -> String {
        match self {
            RouteKind::Explicit => "version".into(),
            RouteKind::Alias(a) => format!("alias:{a}"),
            RouteKind::Split { rollout: true } => "rollout".into(),
            RouteKind::Split { rollout: false } => "split".into(),
            RouteKind::Production => "alias:production".into(),
            RouteKind::Latest => "latest".into(),
        }
    }
}

/// Where a request goes: the load that answers it, and shadow copies.
pub(crate) struct Route {
    pub load: Arc<ServedModel>,
    pub kind: RouteKind,
    /// Loads of this model that also get a copy, with the comparison tolerance.
    pub shadows: Vec<Arc<ServedModel>>,
    pub tolerance: Option<f64>,
}

impl Runtime {
    pub(crate) fn route(
        &self,
        target: &Target,
        context: &RequestContext,
        request: &InferRequest,
    ) -> Result<Route, RuntimeError> {
        let model = &target.model;
        if let Some(grant) = &context.grant
            && !grant.allows(model)
        {
            return Err(RuntimeError::Forbidden {
                principal: context.principal.clone(),
                model: model.clone(),
            });
        }
        let policies = self.policies.read();
        let policy = policies.get(model);
        let models = self.read();
        let entry = models
            .get(model)
            .ok_or_else(|| RuntimeError::UnknownModel(model.clone()))?;
        if let Some(lazy) = &self.lazy {
            lazy.touch(model);
        }
        if let Some(version) = target.version.as_deref() {
            let number = resolve(model, policy.map(|p| &p.aliases), version)?;
            let load = named_version(model, entry, number, version)?;
            let kind = if version.parse::<u64>().is_ok() {
                RouteKind::Explicit
            } else {
                RouteKind::Alias(version.to_string())
            };
            return Ok(Route {
                load,
                kind,
                shadows: Vec::new(),
                tolerance: None,
            });
        }
        drop(models);
        drop(policies);
        let (traffic, source) = self.traffic(model)?;
        let models = self.read();
        let entry = models
            .get(model)
            .ok_or_else(|| RuntimeError::UnknownModel(model.clone()))?;
        let production = self.production(model);
        let (load, kind) = if traffic.split.is_empty() {
            match production {
                Some(v) => (
                    named_version(model, entry, v, PRODUCTION)?,
                    RouteKind::Production,
                ),
                None => (latest_ready(model, entry)?, RouteKind::Latest),
            }
        } else {
            let arms = traffic.arms().map_err(RuntimeError::InvalidInput)?;
            let loads: Vec<Option<Arc<ServedModel>>> = arms
                .iter()
                .map(|(t, _)| match t {
                    ArmTarget::Version(v) => entry.versions.get(v)?.serving().cloned(),
                    ArmTarget::Model(m) => {
                        let other = models.get(m)?;
                        default_load(m, other, self.production(m)).ok()
                    }
                })
                .collect();
            let serving: Vec<bool> = loads.iter().map(Option::is_some).collect();
            let weights: Vec<f64> = arms.iter().map(|(_, w)| *w).collect();
            let key = traffic
                .sticky
                .as_ref()
                .and_then(|name| sticky_key(context, request, name));
            let point = key.as_deref().map_or_else(random_unit, key_point);
            let chosen = pick(&weights, &serving, point).ok_or_else(|| {
                let reasons: Vec<String> = arms
                    .iter()
                    .map(|(t, _)| match t {
                        ArmTarget::Version(v) => entry
                            .versions
                            .get(v)
                            .map_or(format!("version {v} is unknown"), |s| s.not_serving(*v)),
                        ArmTarget::Model(m) => format!("model '{m}' is not ready"),
                    })
                    .collect();
                RuntimeError::NotReady {
                    model: model.clone(),
                    reason: format!(
                        "no arm of the traffic split can serve: {}",
                        reasons.join("; ")
                    ),
                }
            })?;
            let load = loads[chosen]
                .clone()
                .ok_or_else(|| RuntimeError::NotReady {
                    model: model.clone(),
                    reason: "the chosen arm stopped serving".into(),
                })?;
            (
                load,
                RouteKind::Split {
                    rollout: source == PolicySource::Rollout,
                },
            )
        };
        let answering = load.spec().version;
        let shadows = traffic
            .shadows()
            .into_iter()
            .filter(|(v, share)| *v != answering && *share > 0.0 && random_unit() < *share)
            .filter_map(|(v, _)| entry.versions.get(&v)?.serving().cloned())
            .collect();
        Ok(Route {
            load,
            kind,
            shadows,
            tolerance: traffic.tolerance,
        })
    }

    /// Whether requests for `target` can be routed now; the error says why not. Front ends ask
    /// when a request cannot even be decoded: an unknown or unavailable model is the better
    /// answer then.
    pub fn check_route(
        &self,
        target: &Target,
        context: &RequestContext,
    ) -> Result<(), RuntimeError> {
        self.route(target, context, &InferRequest::default())
            .map(|_| ())
    }

    /// The name of the header (or metadata key) whose value pins requests of `model` to an arm.
    pub fn sticky_key_name(&self, model: &str) -> Option<String> {
        let stored = self
            .policies
            .read()
            .get(model)
            .and_then(|p| p.traffic.as_ref().map(|t| t.sticky.clone()));
        match stored {
            Some(sticky) => sticky,
            None => self.read().get(model)?.configured.as_ref()?.sticky.clone(),
        }
    }
}

/// The sticky key of a request: the front end's (from the named header), else the request
/// parameter of that name.
fn sticky_key(context: &RequestContext, request: &InferRequest, name: &str) -> Option<String> {
    if let Some(key) = &context.routing_key {
        return Some(key.clone());
    }
    match request.parameters.get(name)? {
        Parameter::String(s) => Some(s.clone()),
        Parameter::Int64(v) => Some(v.to_string()),
        Parameter::Uint64(v) => Some(v.to_string()),
        Parameter::Bool(b) => Some(b.to_string()),
        Parameter::Double(d) => Some(d.to_string()),
    }
}

/// The load serving `number` (named `asked` by the caller) of the model.
pub(crate) fn named_version(
    model: &str,
    entry: &ModelEntry,
    number: u64,
    asked: &str,
) -> Result<Arc<ServedModel>, RuntimeError> {
    let state = entry
        .versions
        .get(&number)
        .ok_or_else(|| RuntimeError::UnknownVersion {
            model: model.to_string(),
            version: asked.to_string(),
        })?;
    state
        .serving()
        .cloned()
        .ok_or_else(|| RuntimeError::NotReady {
            model: model.to_string(),
            reason: if asked == number.to_string() {
                state.not_serving(number)
            } else {
                format!("alias '{asked}' points at {}", state.not_serving(number))
            },
        })
}

/// What an unversioned request gets without a split: the `production` version, else the
/// highest ready one.
pub(crate) fn default_load(
    model: &str,
    entry: &ModelEntry,
    production: Option<u64>,
) -> Result<Arc<ServedModel>, RuntimeError> {
    match production {
        Some(v) => named_version(model, entry, v, PRODUCTION),
        None => latest_ready(model, entry),
    }
}

/// The highest version that serves.
pub(crate) fn latest_ready(
    model: &str,
    entry: &ModelEntry,
) -> Result<Arc<ServedModel>, RuntimeError> {
    if let Some(load) = entry.versions.values().rev().find_map(|s| s.serving()) {
        return Ok(Arc::clone(load));
    }
    let reason = match &entry.problem {
        Some(problem) => problem.reason.clone(),
        None if entry.versions.is_empty() => "it has no versions".into(),
        None => entry
            .versions
            .iter()
            .map(|(v, s)| s.not_serving(*v))
            .collect::<Vec<_>>()
            .join("; "),
    };
    Err(RuntimeError::NotReady {
        model: model.to_string(),
        reason,
    })
}

/// A uniform number in [0, 1) from a per-thread xorshift generator: routing needs speed, not
/// quality.
pub(crate) fn random_unit() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let addr = &nanos as *const u64 as u64;
    (nanos ^ addr.rotate_left(32)) | 1
}
