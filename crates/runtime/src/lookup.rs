//! What metadata, configuration, readiness and statistics report. These lookups never go
//! through the router: a traffic policy decides where inferences go, not what a model is.

use std::sync::Arc;

use crate::router::{latest_ready, named_version};
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
    /// The named version of `name`, or its highest ready one.
    pub fn describe(&self, name: &str, version: Option<&str>) -> Result<ModelView, RuntimeError> {
        let models = self.read();
        let entry = models
            .get(name)
            .ok_or_else(|| RuntimeError::UnknownModel(name.to_string()))?;
        let load = match version.filter(|v| !v.is_empty()) {
            Some(v) => named_version(name, entry, v)?,
            None => latest_ready(name, entry)?,
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

    /// Statistics of the loaded versions: of every model, of one model, or of one version.
    pub fn statistics(
        &self,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Result<Vec<VersionStatistics>, RuntimeError> {
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
                    Some(v) => vec![named_version(name, entry, v)?],
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
