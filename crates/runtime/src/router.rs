//! Which version answers a request. Today: the version the caller named, else the highest ready
//! one. The chosen load is held for the request's lifetime, so a swap or unload meanwhile lets
//! it finish where it started. Metadata, configuration and statistics use their own lookup
//! ([`Runtime::describe`]), so a traffic policy here can never change what they report.

use std::sync::Arc;

use crate::registry::ModelEntry;
use crate::{RequestContext, Runtime, RuntimeError, ServedModel, Target};

/// Where a request goes: the load that answers it.
pub(crate) struct Route {
    pub load: Arc<ServedModel>,
}

impl Runtime {
    pub(crate) fn route(
        &self,
        target: &Target,
        _context: &RequestContext,
    ) -> Result<Route, RuntimeError> {
        let models = self.read();
        let entry = models
            .get(&target.model)
            .ok_or_else(|| RuntimeError::UnknownModel(target.model.clone()))?;
        let load = match target.version.as_deref() {
            Some(version) => named_version(&target.model, entry, version)?,
            None => latest_ready(&target.model, entry)?,
        };
        Ok(Route { load })
    }

    /// Whether requests for `target` can be routed now; the error says why not. Front ends ask
    /// when a request cannot even be decoded: an unknown or unavailable model is the better
    /// answer then.
    pub fn check_route(&self, target: &Target) -> Result<(), RuntimeError> {
        self.route(target, &RequestContext::new(crate::Protocol::Http))
            .map(|_| ())
    }
}

/// The load serving `version` of the model.
pub(crate) fn named_version(
    model: &str,
    entry: &ModelEntry,
    version: &str,
) -> Result<Arc<ServedModel>, RuntimeError> {
    let unknown = || RuntimeError::UnknownVersion {
        model: model.to_string(),
        version: version.to_string(),
    };
    let number = version.parse::<u64>().map_err(|_| unknown())?;
    let state = entry.versions.get(&number).ok_or_else(unknown)?;
    state
        .serving()
        .cloned()
        .ok_or_else(|| RuntimeError::NotReady {
            model: model.to_string(),
            reason: state.not_serving(number),
        })
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
