//! What metadata, configuration, readiness and statistics report. These lookups never go
//! through the router: a traffic policy decides where inferences go, not what a model is.

use std::sync::Arc;

use crate::router::{default_load, named_version};
use crate::traffic::resolve;
use crate::{ModelSpec, Runtime, RuntimeError, StatsSnapshot};

/// A model version as metadata reports it.
#[derive(Debug, Clone)]
pub struct ModelView {
    pub spec: Arc<ModelSpec>,
    /// Every ready version of the model, ascending.
    pub versions: Vec<u64>,
}

/// One loaded version's statistics.
#[derive(Debug, Clone)]
pub struct VersionStatistics {
    pub name: String,
    pub version: u64,
    pub stats: StatsSnapshot,
}

impl Runtime {
    /// The named version (or alias) of `name`, or the one unversioned requests get without
    /// a split (`production`, else the highest ready). A cross-model endpoint is described by
    /// the first model of its split that serves, under the endpoint's name.
    pub fn describe(&self, name: &str, version: Option<&str>) -> Result<ModelView, RuntimeError> {
        let aliases = self.policies.read().get(name).map(|p| p.aliases.clone());
        let models = self.read();
        let entry = models
            .get(name)
            .ok_or_else(|| RuntimeError::UnknownModel(name.to_string()))?;
        if entry.endpoint {
            let arms = entry
                .configured
                .as_ref()
                .and_then(|t| t.arms().ok())
                .unwrap_or_default();
            let spec = arms
                .iter()
                .find_map(|(t, _)| match t {
                    inferd_core::ArmTarget::Model(m) => {
                        let other = models.get(m)?;
                        default_load(m, other, self.production(m)).ok()
                    }
                    inferd_core::ArmTarget::Version(_) => None,
                })
                .ok_or_else(|| RuntimeError::NotReady {
                    model: name.to_string(),
                    reason: "none of the models of its split serves".into(),
                })?;
            let spec = ModelSpec {
                name: name.to_string(),
                ..ModelSpec::clone(spec.spec())
            };
            return Ok(ModelView {
                spec: Arc::new(spec),
                versions: Vec::new(),
            });
        }
        let load = match version.filter(|v| !v.is_empty()) {
            Some(v) => named_version(name, entry, resolve(name, aliases.as_ref(), v)?, v)?,
            None => default_load(
                name,
                entry,
                aliases.and_then(|a| a.get(crate::policy::PRODUCTION).copied()),
            )?,
        };
        let versions = entry
            .versions
            .iter()
            .filter(|(_, s)| s.serving().is_some())
            .map(|(v, _)| *v)
            .collect();
        Ok(ModelView {
            spec: Arc::clone(load.spec()),
            versions,
        })
    }

    /// What the readiness endpoints answer: the version [`Self::describe`] finds, if it can
    /// serve now (an ensemble: every step can).
    pub fn ready(&self, name: &str, version: Option<&str>) -> Result<ModelView, RuntimeError> {
        let view = self.describe(name, version)?;
        let models = self.read();
        let unready = models
            .get(name)
            .and_then(|e| e.versions.get(&view.spec.version))
            .and_then(|s| s.serving())
            .and_then(|load| load.steps())
            .and_then(|steps| crate::ensemble::unready_step(steps, &models));
        match unready {
            Some(reason) => Err(RuntimeError::NotReady {
                model: name.to_string(),
                reason,
            }),
            None => Ok(view),
        }
    }

    /// Statistics of the loaded versions: of every model, of one model, or of one version.
    pub fn statistics(
        &self,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Result<Vec<VersionStatistics>, RuntimeError> {
        let aliases = name.and_then(|n| self.policies.read().get(n).map(|p| p.aliases.clone()));
        let models = self.read();
        let loads: Vec<_> = match (
            name.filter(|n| !n.is_empty()),
            version.filter(|v| !v.is_empty()),
        ) {
            (None, _) => models
                .values()
                .flat_map(|e| e.versions.values().filter_map(|s| s.serving().cloned()))
                .collect(),
            (Some(name), version) => {
                let entry = models
                    .get(name)
                    .ok_or_else(|| RuntimeError::UnknownModel(name.to_string()))?;
                match version {
                    Some(v) => vec![named_version(
                        name,
                        entry,
                        resolve(name, aliases.as_ref(), v)?,
                        v,
                    )?],
                    None => entry
                        .versions
                        .values()
                        .filter_map(|s| s.serving().cloned())
                        .collect(),
                }
            }
        };
        drop(models);
        Ok(loads
            .into_iter()
            .map(|load| VersionStatistics {
                name: load.spec().name.clone(),
                version: load.spec().version,
                stats: load.stats(),
            })
            .collect())
    }
}
