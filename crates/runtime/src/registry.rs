//! Which models and versions exist, their load state, and lookup for requests. How versions
//! get in and out of service is in `lifecycle.rs`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use inferd_core::Backend;

use crate::fingerprint::Fingerprints;
use crate::{RuntimeError, ServedModel, StatsSnapshot, repository};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    Loading,
    Ready,
    /// Out of service, finishing the requests it already accepted.
    Unloading,
    Unavailable,
}

impl ModelState {
    /// The protocol's state names (repository index extension).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Loading => "LOADING",
            ModelState::Ready => "READY",
            ModelState::Unloading => "UNLOADING",
            ModelState::Unavailable => "UNAVAILABLE",
        }
    }
}

/// Who decides what is loaded (Triton's `--model-control-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlMode {
    /// Everything in the repository is loaded at start; nothing changes afterwards.
    #[default]
    None,
    /// The repository is rescanned periodically; what changed on disk is loaded or unloaded.
    Poll,
    /// Only the load/unload API (and the start-up list) loads models.
    Explicit,
}

pub(crate) struct VersionSlot {
    pub state: ModelState,
    pub reason: String,
    pub served: Option<Arc<ServedModel>>,
    /// Content fingerprint of the files and config of the last load attempt.
    pub fingerprint: Option<u64>,
    /// Fingerprint of the load that serves now.
    pub serving: Option<u64>,
    /// Counts for readiness. False for unloaded versions and for failed updates while earlier
    /// versions of the model keep serving.
    pub required: bool,
}

impl VersionSlot {
    pub fn loading(fingerprint: u64) -> VersionSlot {
        VersionSlot {
            state: ModelState::Loading,
            reason: String::new(),
            served: None,
            fingerprint: Some(fingerprint),
            serving: None,
            required: true,
        }
    }
}

#[derive(Default)]
pub(crate) struct ModelEntry {
    pub versions: BTreeMap<u64, VersionSlot>,
    /// Why no version can be loaded at all (bad config.toml, no version directories).
    pub problem: Option<String>,
    /// The problem counts against readiness (found at start-up).
    pub problem_counts: bool,
    /// Loads that left service, still finishing their requests: reported UNLOADING until gone.
    pub draining: Vec<(u64, Weak<ServedModel>)>,
}

impl ModelEntry {
    /// Takes `version` out of service; requests it already accepted finish on it. Returns the
    /// load, to be dropped after the registry lock is released.
    pub fn retire(&mut self, version: u64, reason: &str) -> Option<Arc<ServedModel>> {
        let slot = self.versions.get_mut(&version)?;
        let served = slot.served.take();
        slot.serving = None;
        if let Some(served) = &served {
            self.draining.retain(|(_, w)| w.strong_count() > 0);
            self.draining.push((version, Arc::downgrade(served)));
        }
        slot.state = ModelState::Unavailable;
        slot.reason = reason.to_string();
        slot.required = false;
        // Selected again later, it loads again.
        slot.fingerprint = None;
        served
    }

    /// Replaces the load serving `version`; the old one drains.
    pub fn swap(&mut self, version: u64, served: Arc<ServedModel>) -> Option<Arc<ServedModel>> {
        let slot = self.versions.get_mut(&version)?;
        let old = slot.served.replace(served);
        if let Some(old) = &old {
            self.draining.retain(|(_, w)| w.strong_count() > 0);
            self.draining.push((version, Arc::downgrade(old)));
        }
        old
    }

    fn draining(&mut self, version: u64) -> bool {
        self.draining.retain(|(_, w)| w.strong_count() > 0);
        self.draining.iter().any(|(v, _)| *v == version)
    }

    pub fn has_served(&self) -> bool {
        self.versions.values().any(|s| s.served.is_some())
    }
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
    pub(crate) repository: PathBuf,
    pub(crate) backends: Vec<Arc<dyn Backend>>,
    pub(crate) control: ControlMode,
    pub(crate) models: RwLock<BTreeMap<String, ModelEntry>>,
    /// One lifecycle operation (poll, load, unload) per model at a time.
    pub(crate) model_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub(crate) fingerprints: Arc<Mutex<Fingerprints>>,
    /// Start-up loading has finished: until then the server is not ready, even before the
    /// first model shows up in the registry.
    pub(crate) startup_done: AtomicBool,
}

impl Runtime {
    pub fn new(repository: impl Into<PathBuf>, backends: Vec<Arc<dyn Backend>>) -> Runtime {
        Runtime {
            repository: repository.into(),
            backends,
            control: ControlMode::None,
            models: RwLock::default(),
            model_locks: Mutex::default(),
            fingerprints: Arc::default(),
            startup_done: AtomicBool::new(false),
        }
    }

    pub fn with_control_mode(self, control: ControlMode) -> Runtime {
        Runtime { control, ..self }
    }

    pub fn repository(&self) -> &Path {
        &self.repository
    }

    pub fn control_mode(&self) -> ControlMode {
        self.control
    }

    pub(crate) fn backend_names(&self) -> String {
        self.backends
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ModelEntry>> {
        // A poisoned lock only means a panic elsewhere; the map itself is always consistent.
        self.models.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ModelEntry>> {
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

    /// Statistics of the loaded versions: of every model, of one model, or of one version.
    pub fn statistics(
        &self,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Result<Vec<(Arc<ServedModel>, StatsSnapshot)>, RuntimeError> {
        let served: Vec<Arc<ServedModel>> = match (name.filter(|n| !n.is_empty()), version) {
            (None, _) => self
                .read()
                .values()
                .flat_map(|e| e.versions.values().filter_map(|s| s.served.clone()))
                .collect(),
            (Some(name), Some(v)) if !v.is_empty() => vec![self.get(name, Some(v))?],
            (Some(name), _) => {
                let models = self.read();
                let entry = models
                    .get(name)
                    .ok_or_else(|| RuntimeError::UnknownModel(name.to_string()))?;
                entry
                    .versions
                    .values()
                    .filter_map(|s| s.served.clone())
                    .collect()
            }
        };
        Ok(served
            .into_iter()
            .map(|m| {
                let stats = m.stats();
                (m, stats)
            })
            .collect())
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

    /// Every model version the server knows, and the repository's models it has not loaded.
    pub fn index(&self) -> Vec<IndexEntry> {
        let mut out = Vec::new();
        let mut models = self.write();
        for (name, entry) in models.iter_mut() {
            if let Some(problem) = &entry.problem
                && !entry.has_served()
            {
                out.push(IndexEntry {
                    name: name.clone(),
                    version: None,
                    state: ModelState::Unavailable,
                    reason: problem.clone(),
                });
            }
            let versions: Vec<u64> = entry.versions.keys().copied().collect();
            for version in versions {
                let draining = entry.draining(version);
                let slot = &entry.versions[&version];
                let state = match slot.state {
                    ModelState::Unavailable if slot.served.is_none() && draining => {
                        ModelState::Unloading
                    }
                    state => state,
                };
                out.push(IndexEntry {
                    name: name.clone(),
                    version: Some(version),
                    state,
                    reason: slot.reason.clone(),
                });
            }
        }
        let known: Vec<String> = models.keys().cloned().collect();
        drop(models);
        for name in repository::scan(&self.repository).unwrap_or_default() {
            if !known.contains(&name) {
                out.push(IndexEntry {
                    name,
                    version: None,
                    state: ModelState::Unavailable,
                    reason: "not loaded".into(),
                });
            }
        }
        out.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        out
    }

    /// Ready when every model version that should be loaded is; says which are not and why.
    pub fn readiness(&self) -> Readiness {
        let models = self.read();
        let mut loading = false;
        let mut not_ready = Vec::new();
        if !self.startup_done.load(Ordering::Acquire) {
            loading = true;
            not_ready.push("start-up loading has not finished".to_string());
        }
        for (name, entry) in models.iter() {
            if let Some(problem) = &entry.problem
                && entry.problem_counts
                && !entry.has_served()
            {
                not_ready.push(format!("{name}: {problem}"));
            }
            for (version, slot) in entry.versions.iter().filter(|(_, s)| s.required) {
                match slot.state {
                    ModelState::Ready => {}
                    ModelState::Loading => {
                        loading = true;
                        not_ready.push(format!("{name}/{version}: loading"));
                    }
                    _ => not_ready.push(format!("{name}/{version}: {}", slot.reason)),
                }
            }
        }
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
        ModelState::Unloading => format!("version {version} is unloading"),
        _ if slot.reason == "unloaded" => format!("version {version} is unloaded"),
        _ => format!("version {version} failed to load: {}", slot.reason),
    }
}
