//! Which models and versions exist, their load state, and lookup for requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use inferd_core::{Backend, ModelConfig};
use tokio::task::JoinSet;

use crate::{ModelSpec, RuntimeError, ServedModel, repository};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    Loading,
    Ready,
    Unavailable,
}

impl ModelState {
    /// The protocol's state names (repository index extension).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Loading => "LOADING",
            ModelState::Ready => "READY",
            ModelState::Unavailable => "UNAVAILABLE",
        }
    }
}

struct VersionSlot {
    state: ModelState,
    reason: String,
    served: Option<Arc<ServedModel>>,
}

#[derive(Default)]
struct ModelEntry {
    versions: BTreeMap<u64, VersionSlot>,
    /// Why no version can be loaded at all (bad config.toml, no version directories).
    problem: Option<String>,
}

/// One row of the repository index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub version: Option<u64>,
    pub state: ModelState,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Every model version that should serve does.
    pub ready: bool,
    /// Some model version is still loading.
    pub loading: bool,
    /// `model[/version]: reason` for everything that should serve and does not.
    pub not_ready: Vec<String>,
}

pub struct Runtime {
    repository: PathBuf,
    backends: Vec<Arc<dyn Backend>>,
    models: RwLock<BTreeMap<String, ModelEntry>>,
}

impl Runtime {
    pub fn new(repository: impl Into<PathBuf>, backends: Vec<Arc<dyn Backend>>) -> Runtime {
        Runtime {
            repository: repository.into(),
            backends,
            models: RwLock::default(),
        }
    }

    pub fn repository(&self) -> &Path {
        &self.repository
    }

    /// Loads every model of the repository, in parallel. A model that fails is recorded with its
    /// reason and logged; the others serve regardless. Fails only if the repository is unreadable.
    pub async fn load_repository(self: &Arc<Self>) -> std::io::Result<()> {
        let dirs = repository::scan(&self.repository)?;
        let mut loads = JoinSet::new();
        for dir in dirs {
            let (entry, config) = Self::plan(&dir);
            if let Some(problem) = &entry.problem {
                tracing::error!(model = %dir.name, "model cannot be loaded: {problem}");
            }
            let versions: Vec<u64> = entry.versions.keys().copied().collect();
            // The entry is in the map before any load starts, so every load finds its slot.
            self.write().insert(dir.name.clone(), entry);
            for version in versions {
                let (runtime, name, path, config) = (
                    Arc::clone(self),
                    dir.name.clone(),
                    dir.path.clone(),
                    config.clone(),
                );
                loads.spawn_blocking(move || {
                    let result = runtime.load_version(&name, &path, version, &config);
                    runtime.finish_load(&name, version, result);
                });
            }
        }
        while let Some(joined) = loads.join_next().await {
            if let Err(e) = joined {
                tracing::error!("a model load task crashed: {e}");
            }
        }
        Ok(())
    }

    /// The entry for a model directory: its config and the versions to load, all `Loading`, or
    /// the reason nothing can load.
    fn plan(dir: &repository::ModelDir) -> (ModelEntry, ModelConfig) {
        let mut entry = ModelEntry::default();
        let config = match ModelConfig::load_from_dir(&dir.path) {
            Ok(config) => config,
            Err(e) => {
                entry.problem = Some(e.to_string());
                return (entry, ModelConfig::default());
            }
        };
        let selected = config.version_policy.select(&dir.versions);
        if dir.versions.is_empty() {
            entry.problem = Some(format!(
                "no version directories in {} (expected {}/1/model.onnx)",
                dir.path.display(),
                dir.name
            ));
        } else if selected.is_empty() {
            entry.problem = Some(format!(
                "version policy {:?} selects none of the versions {:?}",
                config.version_policy, dir.versions
            ));
        }
        for version in selected {
            let slot = VersionSlot {
                state: ModelState::Loading,
                reason: String::new(),
                served: None,
            };
            entry.versions.insert(version, slot);
        }
        (entry, config)
    }

    fn load_version(
        &self,
        name: &str,
        dir: &Path,
        version: u64,
        config: &ModelConfig,
    ) -> Result<ServedModel, String> {
        let version_dir = dir.join(version.to_string());
        let backend = match &config.backend {
            Some(wanted) => self.backends.iter().find(|b| b.name() == wanted).ok_or_else(|| {
                format!("config asks for backend '{wanted}', which this server does not have ({})", self.backend_names())
            })?,
            None => self.backends.iter().find(|b| b.accepts(&version_dir, config)).ok_or_else(|| {
                format!(
                    "no backend recognises the files in {} (backends: {}; tract expects model.onnx)",
                    version_dir.display(),
                    self.backend_names()
                )
            })?,
        };
        let started = std::time::Instant::now();
        let model = backend
            .load(&version_dir, config)
            .map_err(|e| e.to_string())?;
        let spec = ModelSpec::derive(
            name,
            version,
            (backend.name(), backend.platform()),
            config,
            model.signature(),
        )?;
        tracing::info!(
            model = name,
            version,
            backend = backend.name(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        ServedModel::new(spec, Arc::from(model))
            .map_err(|e| format!("cannot start the model's instance threads: {e}"))
    }

    fn finish_load(&self, name: &str, version: u64, result: Result<ServedModel, String>) {
        let mut models = self.write();
        let Some(slot) = models
            .get_mut(name)
            .and_then(|e| e.versions.get_mut(&version))
        else {
            return;
        };
        match result {
            Ok(served) => {
                *slot = VersionSlot {
                    state: ModelState::Ready,
                    reason: String::new(),
                    served: Some(Arc::new(served)),
                }
            }
            Err(reason) => {
                tracing::error!(model = name, version, "model failed to load: {reason}");
                *slot = VersionSlot {
                    state: ModelState::Unavailable,
                    reason,
                    served: None,
                };
            }
        }
    }

    fn backend_names(&self) -> String {
        self.backends
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ModelEntry>> {
        // A poisoned lock only means a panic elsewhere; the map itself is always consistent.
        self.models.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ModelEntry>> {
        self.models.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The model version that serves `name`: the given version, or the highest ready one.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<ServedModel>, RuntimeError> {
        let models = self.read();
        let entry = models
            .get(name)
            .ok_or_else(|| RuntimeError::UnknownModel(name.to_string()))?;
        let not_ready = |reason: String| RuntimeError::NotReady {
            model: name.to_string(),
            reason,
        };
        match version.filter(|v| !v.is_empty()) {
            Some(v) => {
                let unknown = || RuntimeError::UnknownVersion {
                    model: name.to_string(),
                    version: v.to_string(),
                };
                let number = v.parse::<u64>().map_err(|_| unknown())?;
                let slot = entry.versions.get(&number).ok_or_else(unknown)?;
                slot.served
                    .clone()
                    .ok_or_else(|| not_ready(describe(number, slot)))
            }
            None => {
                if let Some(served) = entry.versions.values().rev().find_map(|s| s.served.clone()) {
                    return Ok(served);
                }
                let reasons: Vec<String> = entry
                    .versions
                    .iter()
                    .map(|(v, s)| describe(*v, s))
                    .collect();
                Err(not_ready(
                    entry.problem.clone().unwrap_or_else(|| reasons.join("; ")),
                ))
            }
        }
    }

    /// Versions of `name` that are ready, ascending.
    pub fn ready_versions(&self, name: &str) -> Vec<u64> {
        self.read()
            .get(name)
            .map(|e| {
                e.versions
                    .iter()
                    .filter(|(_, s)| s.served.is_some())
                    .map(|(v, _)| *v)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn index(&self) -> Vec<IndexEntry> {
        let mut out = Vec::new();
        for (name, entry) in self.read().iter() {
            if let Some(problem) = &entry.problem
                && entry.versions.is_empty()
            {
                out.push(IndexEntry {
                    name: name.clone(),
                    version: None,
                    state: ModelState::Unavailable,
                    reason: problem.clone(),
                });
            }
            for (version, slot) in &entry.versions {
                out.push(IndexEntry {
                    name: name.clone(),
                    version: Some(*version),
                    state: slot.state,
                    reason: slot.reason.clone(),
                });
            }
        }
        out
    }

    /// Ready when every model version that should be loaded is; says which are not and why.
    pub fn readiness(&self) -> Readiness {
        let index = self.index();
        let loading = index.iter().any(|e| e.state == ModelState::Loading);
        let not_ready: Vec<String> = index
            .into_iter()
            .filter(|e| e.state != ModelState::Ready)
            .map(|e| match (e.version, e.state) {
                (Some(v), ModelState::Loading) => format!("{}/{v}: loading", e.name),
                (Some(v), _) => format!("{}/{v}: {}", e.name, e.reason),
                (None, _) => format!("{}: {}", e.name, e.reason),
            })
            .collect();
        Readiness {
            ready: not_ready.is_empty(),
            loading,
            not_ready,
        }
    }
}

fn describe(version: u64, slot: &VersionSlot) -> String {
    match slot.state {
        ModelState::Loading => format!("version {version} is loading"),
        _ => format!("version {version} failed to load: {}", slot.reason),
    }
}
