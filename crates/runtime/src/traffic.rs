//! The policies the router applies, kept in memory from the state store: aliases, traffic
//! policies set through the API, rollouts. Changes are validated here, written to the store
//! (with their history) and seen by every replica of a shared store within its poll period.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use inferd_core::TrafficPolicy;
use serde::Serialize;

use crate::policy::{self, ArmTarget, PRODUCTION};
use crate::registry::ModelEntry;
use crate::rollout::Rollout;
use crate::state::{Change, Kind, Row};
use crate::{Runtime, RuntimeError};

/// One model's policies.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelPolicy {
    pub aliases: BTreeMap<String, u64>,
    /// Set through the API; replaces config.toml's `[traffic]`.
    pub traffic: Option<TrafficPolicy>,
    pub rollout: Option<Rollout>,
}

#[derive(Default)]
pub(crate) struct Policies {
    pub models: RwLock<HashMap<String, ModelPolicy>>,
    /// The store's revision the map is as of.
    pub revision: std::sync::atomic::AtomicI64,
}

impl Policies {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, ModelPolicy>> {
        self.models.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, ModelPolicy>> {
        self.models.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the map with what the store holds.
    pub fn load(&self, revision: i64, rows: Vec<Row>) {
        let mut models: HashMap<String, ModelPolicy> = HashMap::new();
        for row in rows {
            let policy = models.entry(row.model.clone()).or_default();
            match row.kind {
                Kind::Alias => match row.value.parse() {
                    Ok(v) => {
                        policy.aliases.insert(row.name, v);
                    }
                    Err(_) => {
                        tracing::warn!(model = %row.model, alias = %row.name, "stored alias has no version number; ignored")
                    }
                },
                Kind::Traffic => match serde_json::from_str(&row.value) {
                    Ok(t) => policy.traffic = Some(t),
                    Err(e) => {
                        tracing::warn!(model = %row.model, "stored traffic policy is unreadable ({e}); ignored")
                    }
                },
                Kind::Rollout => match serde_json::from_str(&row.value) {
                    Ok(r) => policy.rollout = Some(r),
                    Err(e) => {
                        tracing::warn!(model = %row.model, "stored rollout is unreadable ({e}); ignored")
                    }
                },
                Kind::Source => {}
            }
        }
        *self.write() = models;
        self.revision
            .store(revision, std::sync::atomic::Ordering::Release);
    }
}

/// The traffic policy in force for a model, and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicySource {
    /// A rollout moves traffic.
    Rollout,
    /// Set through the API.
    Api,
    /// config.toml's `[traffic]`.
    Config,
    None,
}

/// A version the caller named: a number, or an alias of the model.
pub(crate) fn resolve(
    model: &str,
    aliases: Option<&BTreeMap<String, u64>>,
    version: &str,
) -> Result<u64, RuntimeError> {
    if let Ok(v) = version.parse::<u64>() {
        return Ok(v);
    }
    aliases
        .and_then(|a| a.get(version).copied())
        .ok_or_else(|| RuntimeError::UnknownVersion {
            model: model.to_string(),
            version: version.to_string(),
        })
}

/// Checks a policy against the model's versions: every version named exists, cross-model
/// arms name models whose inputs and outputs agree, and the arms batch alike.
pub(crate) fn check_policy(
    model: &str,
    policy: &TrafficPolicy,
    models: &std::collections::BTreeMap<String, ModelEntry>,
) -> Result<(), RuntimeError> {
    let invalid = RuntimeError::InvalidInput;
    let arms = policy.arms().map_err(invalid)?;
    let entry = models.get(model);
    let known = |v: u64| entry.is_some_and(|e| e.versions.contains_key(&v));
    let unknown = |v: u64| {
        let versions: Vec<String> = entry
            .map(|e| e.versions.keys().map(u64::to_string).collect())
            .unwrap_or_default();
        invalid(format!(
            "the policy names version {v}, which model '{model}' does not have (its versions: {})",
            versions.join(", ")
        ))
    };
    let mut specs = Vec::new();
    for (target, _) in &arms {
        match target {
            ArmTarget::Version(v) => {
                if !known(*v) {
                    return Err(unknown(*v));
                }
                if let Some(load) = entry.and_then(|e| e.versions[v].serving()) {
                    specs.push((target.clone(), load.spec().clone()));
                }
            }
            ArmTarget::Model(m) => {
                let candidate = models.get(m).ok_or_else(|| {
                    invalid(format!("the policy names model '{m}', which is not loaded"))
                })?;
                let load = crate::router::default_load(m, candidate, None)
                    .map_err(|e| invalid(format!("the policy names model '{m}': {e}")))?;
                specs.push((target.clone(), load.spec().clone()));
            }
        }
    }
    for (v, _) in policy.shadows() {
        if !known(v) {
            return Err(unknown(v));
        }
    }
    if let Some((first_target, first)) = specs.first() {
        for (target, spec) in &specs[1..] {
            if spec.max_batch_size != first.max_batch_size {
                return Err(invalid(format!(
                    "the split's arms batch differently: {first_target} has max_batch_size {} but \
                     {target} has {}; requests valid for one could fail on the other",
                    first.max_batch_size, spec.max_batch_size
                )));
            }
            if spec.inputs != first.inputs || spec.outputs != first.outputs {
                return Err(invalid(format!(
                    "the split's arms take or return different tensors: {first_target} and \
                     {target} must agree on every input and output"
                )));
            }
        }
    }
    Ok(())
}

impl Runtime {
    /// Aliases of `model` (version numbers).
    pub fn aliases(&self, model: &str) -> Result<BTreeMap<String, u64>, RuntimeError> {
        self.require_model(model)?;
        Ok(self
            .policies
            .read()
            .get(model)
            .map(|p| p.aliases.clone())
            .unwrap_or_default())
    }

    pub(crate) fn require_model(&self, model: &str) -> Result<(), RuntimeError> {
        if self.read().contains_key(model) {
            Ok(())
        } else {
            Err(RuntimeError::UnknownModel(model.to_string()))
        }
    }

    /// Points `alias` at `version`, which must be loaded and ready.
    pub async fn set_alias(
        &self,
        model: &str,
        alias: &str,
        version: &str,
        principal: &str,
    ) -> Result<(), RuntimeError> {
        policy::check_alias(alias).map_err(RuntimeError::InvalidInput)?;
        let number = {
            let models = self.read();
            let entry = models
                .get(model)
                .ok_or_else(|| RuntimeError::UnknownModel(model.to_string()))?;
            let aliases = self.policies.read().get(model).map(|p| p.aliases.clone());
            let number = resolve(model, aliases.as_ref(), version)?;
            let state =
                entry
                    .versions
                    .get(&number)
                    .ok_or_else(|| RuntimeError::UnknownVersion {
                        model: model.to_string(),
                        version: version.to_string(),
                    })?;
            if state.serving().is_none() {
                return Err(RuntimeError::InvalidInput(format!(
                    "alias '{alias}' can only point at a ready version: {} of model '{model}'",
                    state.not_serving(number)
                )));
            }
            number
        };
        self.change(Change {
            model: model.to_string(),
            kind: Kind::Alias,
            name: alias.to_string(),
            value: Some(number.to_string()),
            principal: principal.to_string(),
            reason: format!("alias {alias} -> version {number}"),
        })
        .await
    }

    pub async fn delete_alias(
        &self,
        model: &str,
        alias: &str,
        principal: &str,
    ) -> Result<(), RuntimeError> {
        let known = self.aliases(model)?.contains_key(alias);
        if !known {
            return Err(RuntimeError::UnknownVersion {
                model: model.to_string(),
                version: alias.to_string(),
            });
        }
        self.change(Change {
            model: model.to_string(),
            kind: Kind::Alias,
            name: alias.to_string(),
            value: None,
            principal: principal.to_string(),
            reason: format!("alias {alias} removed"),
        })
        .await
    }

    /// The policy in force for `model` and where it comes from.
    pub fn traffic(&self, model: &str) -> Result<(TrafficPolicy, PolicySource), RuntimeError> {
        let configured = {
            let models = self.read();
            let entry = models
                .get(model)
                .ok_or_else(|| RuntimeError::UnknownModel(model.to_string()))?;
            entry.configured.clone()
        };
        let policies = self.policies.read();
        let policy = policies.get(model);
        if let Some(split) = policy
            .and_then(|p| p.rollout.as_ref())
            .and_then(|r| r.split())
        {
            let shadow = policy
                .and_then(|p| p.traffic.clone())
                .or(configured)
                .map(|t| t.shadow)
                .unwrap_or_default();
            return Ok((
                TrafficPolicy {
                    split,
                    shadow,
                    ..Default::default()
                },
                PolicySource::Rollout,
            ));
        }
        if let Some(t) = policy.and_then(|p| p.traffic.clone()) {
            return Ok((t, PolicySource::Api));
        }
        Ok(match configured {
            Some(t) => (t, PolicySource::Config),
            None => (TrafficPolicy::default(), PolicySource::None),
        })
    }

    /// Replaces the model's traffic policy (an empty one clears it: config.toml's applies).
    pub async fn set_traffic(
        &self,
        model: &str,
        traffic: TrafficPolicy,
        principal: &str,
    ) -> Result<(), RuntimeError> {
        check_policy(model, &traffic, &self.read())?;
        let value = (!traffic.is_empty() || traffic.sticky.is_some())
            .then(|| serde_json::to_string(&traffic).unwrap_or_default());
        self.change(Change {
            model: model.to_string(),
            kind: Kind::Traffic,
            name: String::new(),
            reason: match &value {
                Some(v) => format!("traffic policy set: {v}"),
                None => "traffic policy cleared".into(),
            },
            value,
            principal: principal.to_string(),
        })
        .await
    }

    /// Every change to `model`'s aliases, traffic and rollouts.
    pub async fn history(
        &self,
        model: &str,
    ) -> Result<Vec<crate::state::HistoryEntry>, RuntimeError> {
        self.require_model(model)?;
        self.store.history(model).await.map_err(RuntimeError::Store)
    }

    /// Writes a change to the store and reloads what it holds.
    pub(crate) async fn change(&self, change: Change) -> Result<(), RuntimeError> {
        tracing::info!(model = %change.model, principal = %change.principal, "{}", change.reason);
        self.store
            .apply(change)
            .await
            .map_err(RuntimeError::Store)?;
        self.reload_state().await
    }

    /// Reloads the policies from the store.
    pub async fn reload_state(&self) -> Result<(), RuntimeError> {
        let (revision, rows) = self.store.snapshot().await.map_err(RuntimeError::Store)?;
        self.policies.load(revision, rows);
        Ok(())
    }

    /// Reloads the policies when another replica changed them (its revision moved).
    pub async fn sync_state(&self) -> Result<bool, RuntimeError> {
        let revision = self.store.revision().await.map_err(RuntimeError::Store)?;
        if revision
            == self
                .policies
                .revision
                .load(std::sync::atomic::Ordering::Acquire)
        {
            return Ok(false);
        }
        self.reload_state().await?;
        Ok(true)
    }

    /// The model's `production` alias, when it has one.
    pub(crate) fn production(&self, model: &str) -> Option<u64> {
        self.policies
            .read()
            .get(model)
            .and_then(|p| p.aliases.get(PRODUCTION).copied())
    }
}
