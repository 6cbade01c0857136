//! Which models and versions exist and the state of each; readiness and the repository index
//! are read from here. How versions get in and out of service is in `lifecycle.rs`, which
//! version answers a request in `router.rs`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use inferd_core::Backend;

use crate::fingerprint::Fingerprints;
use crate::observer::Observer;
use crate::rollout::Meters;
use crate::shadow::Shadows;
use crate::state::StateStore;
use crate::traffic::Policies;
use crate::{ServedModel, repository};

/// A name for this process: host name and pid, and a random part so restarts differ.
fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "inferd".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{host}-{}-{nanos:08x}", std::process::id())
}

/// The protocol's states of a model version (repository index extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    Loading,
    Ready,
    /// Out of service, finishing the requests it already accepted.
    Unloading,
    Unavailable,
}

impl ModelState {
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
    /// Models load on their first request (and by the API), under a memory budget that
    /// unloads the least recently used idle ones.
    Lazy,
}

/// Content fingerprint of a version's files and config, as of one load attempt.
pub(crate) type Fingerprint = u64;

/// Where a model version stands. Each variant holds only what is true of that state.
pub(crate) enum VersionState {
    /// Its first load (or a load after a failure or unload) is running; nothing serves.
    Loading { attempt: Fingerprint },
    /// `load` serves; `update` tells of a newer load of the same version.
    Serving {
        load: Arc<ServedModel>,
        fingerprint: Fingerprint,
        update: Update,
    },
    /// The last load failed and nothing serves. `required`: it counts against readiness
    /// (start-up loads, and changes while the model had nothing else serving).
    Failed {
        attempt: Fingerprint,
        reason: String,
        required: bool,
    },
    /// Taken out of service (unloaded, or no longer selected by the version policy).
    Unloaded,
}

/// A reload of a version that keeps serving its previous load meanwhile.
pub(crate) enum Update {
    None,
    Loading {
        attempt: Fingerprint,
    },
    Failed {
        attempt: Fingerprint,
        reason: String,
    },
}

impl VersionState {
    pub fn serving(&self) -> Option<&Arc<ServedModel>> {
        match self {
            VersionState::Serving { load, .. } => Some(load),
            _ => None,
        }
    }

    /// Fingerprint of the last load attempt: what a rescan compares the files with.
    pub fn attempted(&self) -> Option<Fingerprint> {
        match self {
            VersionState::Loading { attempt }
            | VersionState::Failed { attempt, .. }
            | VersionState::Serving {
                update: Update::Loading { attempt } | Update::Failed { attempt, .. },
                ..
            } => Some(*attempt),
            VersionState::Serving {
                fingerprint,
                update: Update::None,
                ..
            } => Some(*fingerprint),
            VersionState::Unloaded => None,
        }
    }

    /// The protocol state and its reason, for the index.
    fn describe(&self, draining: bool) -> (ModelState, String) {
        match self {
            VersionState::Loading { .. } => (ModelState::Loading, String::new()),
            VersionState::Serving { update, .. } => (
                ModelState::Ready,
                match update {
                    Update::None => String::new(),
                    Update::Loading { .. } => "a reload is loading beside this one".into(),
                    Update::Failed { reason, .. } => {
                        format!("reload failed, the previous load keeps serving: {reason}")
                    }
                },
            ),
            VersionState::Failed { reason, .. } => (ModelState::Unavailable, reason.clone()),
            VersionState::Unloaded if draining => (ModelState::Unloading, "unloaded".into()),
            VersionState::Unloaded => (ModelState::Unavailable, "unloaded".into()),
        }
    }

    /// Why a request cannot be served by this version.
    pub fn not_serving(&self, version: u64) -> String {
        match self {
            VersionState::Loading { .. } => format!("version {version} is loading"),
            VersionState::Serving { .. } => format!("version {version} is serving"),
            VersionState::Failed { reason, .. } => {
                format!("version {version} failed to load: {reason}")
            }
            VersionState::Unloaded => format!("version {version} is unloaded"),
        }
    }
}

/// Why nothing of a model can load (bad config.toml, no version directories).
pub(crate) struct Problem {
    pub reason: String,
    /// Counts against readiness (found at start-up or by polling, not by an API load whose
    /// caller got the error).
    pub counts: bool,
}

#[derive(Default)]
pub(crate) struct ModelEntry {
    pub versions: BTreeMap<u64, VersionState>,
    pub problem: Option<Problem>,
    /// config.toml's `[traffic]`, as of the last load.
    pub configured: Option<inferd_core::TrafficPolicy>,
    /// A cross-model endpoint: no versions of its own, its split names other models.
    pub endpoint: bool,
    /// Its versions are being fetched from its source (nothing of it is known yet).
    pub fetching: bool,
    /// Loads that left service and are finishing their requests: reported UNLOADING until gone.
    pub draining: Vec<(u64, Weak<ServedModel>)>,
}

impl ModelEntry {
    /// Takes `version` out of service; requests it already accepted finish on it. Returns the
    /// load, to be dropped after the registry lock is released.
    pub fn retire(&mut self, version: u64) -> Option<Arc<ServedModel>> {
        let state = self.versions.get_mut(&version)?;
        let old = std::mem::replace(state, VersionState::Unloaded);
        match old {
            VersionState::Serving { load, .. } => {
                self.drain(version, &load);
                Some(load)
            }
            _ => None,
        }
    }

    /// Puts `load` in service for `version`; the load it replaces drains.
    pub fn install(
        &mut self,
        version: u64,
        load: Arc<ServedModel>,
        fingerprint: Fingerprint,
    ) -> Option<Arc<ServedModel>> {
        let new = VersionState::Serving {
            load,
            fingerprint,
            update: Update::None,
        };
        let old = self.versions.insert(version, new)?;
        let VersionState::Serving { load, .. } = old else {
            return None;
        };
        self.drain(version, &load);
        Some(load)
    }

    fn drain(&mut self, version: u64, load: &Arc<ServedModel>) {
        self.draining.retain(|(_, w)| w.strong_count() > 0);
        self.draining.push((version, Arc::downgrade(load)));
    }

    fn is_draining(&self, version: u64) -> bool {
        self.draining
            .iter()
            .any(|(v, w)| *v == version && w.strong_count() > 0)
    }

    pub fn has_served(&self) -> bool {
        self.versions.values().any(|s| s.serving().is_some())
    }
}

/// One row of the repository index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub version: Option<u64>,
    pub state: ModelState,
    pub reason: String,
    /// Memory its last load took (lazy mode, where loads are measured one at a time).
    pub memory_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Every model version that should serve does.
    pub ready: bool,
    /// Some model version is still loading.
    pub loading: bool,
    /// `model[/version]: reason` for everything that should serve and does not.
    pub not_ready: Vec<String>,
    /// The server is shutting down (never ready again).
    pub draining: bool,
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
    /// The server is shutting down: not ready, so load balancers stop sending, while it goes
    /// on answering what still comes.
    pub(crate) draining: AtomicBool,
    pub(crate) observers: Vec<Arc<dyn Observer>>,
    /// Some observer reads the request at completion (kept until then).
    pub(crate) keep_requests: bool,
    pub(crate) store: StateStore,
    pub(crate) policies: Policies,
    pub(crate) shadows: Shadows,
    pub(crate) rollout_meters: Meters,
    /// This process among replicas sharing a state store (runs the rollouts it starts).
    pub(crate) replica: String,
    /// Where models with a `source` are downloaded to.
    pub(crate) cache_root: PathBuf,
    /// Answers of models with `[response_cache] enabled` (`--cache-size`); `None`: off.
    pub(crate) response_cache: Option<Arc<crate::cache::ResponseCache>>,
    /// Lazy mode's loads on demand and budget.
    pub(crate) lazy: Option<Arc<crate::budget::Lazy>>,
    /// Returns memory freed by loads and unloads to the OS, coalesced.
    pub(crate) trimmer: crate::memory::Trimmer,
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
            draining: AtomicBool::new(false),
            observers: Vec::new(),
            keep_requests: false,
            // In memory: opening it cannot fail short of an allocation failure.
            store: StateStore::sqlite(None).unwrap_or_else(|e| panic!("{e}")),
            policies: Policies::default(),
            shadows: Shadows::default(),
            rollout_meters: Meters::default(),
            replica: replica_id(),
            cache_root: crate::source::default_cache(),
            response_cache: None,
            lazy: None,
            trimmer: crate::memory::Trimmer::default(),
        }
    }

    /// Keeps up to `bytes` of answers of the models that enable the response cache.
    pub fn with_response_cache(self, bytes: usize) -> Runtime {
        Runtime {
            response_cache: (bytes > 0).then(|| Arc::new(crate::cache::ResponseCache::new(bytes))),
            ..self
        }
    }

    /// The response cache's size and counts, when there is one.
    pub fn cache_figures(&self) -> Option<crate::CacheFigures> {
        self.response_cache.as_ref().map(|c| c.figures())
    }

    /// Downloads models with a `source` under `dir` (default `~/.cache/inferd/models`).
    pub fn with_model_cache(self, dir: impl Into<PathBuf>) -> Runtime {
        Runtime {
            cache_root: dir.into(),
            ..self
        }
    }

    /// Keeps aliases, traffic policies and rollouts in `store` (default: in memory).
    pub fn with_store(self, store: StateStore) -> Runtime {
        Runtime { store, ..self }
    }

    /// This process's name among replicas of a shared state store.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    pub fn with_control_mode(self, control: ControlMode) -> Runtime {
        Runtime { control, ..self }
    }

    /// Adds an observer of every request (see [`Observer`]).
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Runtime {
        self.keep_requests |= observer.needs_request();
        self.observers.push(observer);
        self
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

    /// Versions of `name` that are ready, ascending.
    pub fn ready_versions(&self, name: &str) -> Vec<u64> {
        self.read()
            .get(name)
            .map(|e| {
                e.versions
                    .iter()
                    .filter(|(_, s)| s.serving().is_some())
                    .map(|(v, _)| *v)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every model version the server knows, and the repository's models it has not loaded.
    pub fn index(&self) -> Vec<IndexEntry> {
        let mut out = Vec::new();
        let known: Vec<String> = {
            let models = self.read();
            for (name, entry) in models.iter() {
                // A cross-model endpoint has no versions: one row for it, ready when an arm
                // of its split serves.
                if entry.endpoint && entry.problem.is_none() {
                    let arms = entry
                        .configured
                        .as_ref()
                        .and_then(|t| t.arms().ok())
                        .unwrap_or_default();
                    let serving: Vec<String> = arms
                        .iter()
                        .filter_map(|(t, _)| match t {
                            inferd_core::ArmTarget::Model(m) => {
                                models.get(m).filter(|e| e.has_served()).map(|_| m.clone())
                            }
                            inferd_core::ArmTarget::Version(_) => None,
                        })
                        .collect();
                    let (state, reason) = if serving.is_empty() {
                        (
                            ModelState::Unavailable,
                            "none of the models of its split serves".to_string(),
                        )
                    } else {
                        (
                            ModelState::Ready,
                            format!("cross-model endpoint over {}", serving.join(", ")),
                        )
                    };
                    out.push(IndexEntry {
                        name: name.clone(),
                        version: None,
                        state,
                        reason,
                        memory_bytes: None,
                    });
                }
                if let Some(problem) = &entry.problem
                    && !entry.has_served()
                {
                    out.push(IndexEntry {
                        name: name.clone(),
                        version: None,
                        state: ModelState::Unavailable,
                        reason: problem.reason.clone(),
                        memory_bytes: None,
                    });
                }
                if entry.fetching && entry.versions.is_empty() {
                    out.push(IndexEntry {
                        name: name.clone(),
                        version: None,
                        state: ModelState::Loading,
                        reason: "fetching its versions from its source".into(),
                        memory_bytes: None,
                    });
                }
                for (version, state) in &entry.versions {
                    let unready = state
                        .serving()
                        .and_then(|load| load.steps())
                        .and_then(|steps| crate::ensemble::unready_step(steps, &models));
                    let (state, mut reason) = match unready {
                        Some(reason) => (ModelState::Unavailable, reason),
                        None => state.describe(entry.is_draining(*version)),
                    };
                    if let (Some(problem), ModelState::Ready) = (&entry.problem, state) {
                        reason =
                            format!("update failed, this load keeps serving: {}", problem.reason);
                    }
                    out.push(IndexEntry {
                        name: name.clone(),
                        version: Some(*version),
                        state,
                        reason,
                        memory_bytes: self.lazy.as_ref().and_then(|l| l.memory_of(name)),
                    });
                }
            }
            models.keys().cloned().collect()
        };
        // Until start-up loading has reached a model, it is on its way, not unavailable
        // (a client waiting for LOADING to end must not stop before it began).
        let pending = !self.startup_done.load(Ordering::Acquire)
            && matches!(self.control, ControlMode::None | ControlMode::Poll);
        // The disk is read with no lock held.
        for name in repository::scan(&self.repository).unwrap_or_default() {
            if !known.contains(&name) {
                let (state, reason) = if pending {
                    (
                        ModelState::Loading,
                        "start-up loading has not reached it yet",
                    )
                } else {
                    (ModelState::Unavailable, "not loaded")
                };
                out.push(IndexEntry {
                    name,
                    version: None,
                    state,
                    reason: reason.into(),
                    memory_bytes: None,
                });
            }
        }
        out.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        out
    }

    /// From now on the server is not ready (a shutdown began); requests are still served.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Ready when every model version that should be loaded is; says which are not and why.
    pub fn readiness(&self) -> Readiness {
        let models = self.read();
        let mut loading = false;
        let mut not_ready = Vec::new();
        let draining = self.draining.load(Ordering::Acquire);
        if draining {
            not_ready.push("the server is shutting down".to_string());
        }
        if !self.startup_done.load(Ordering::Acquire) {
            loading = true;
            not_ready.push("start-up loading has not finished".to_string());
        }
        for (name, entry) in models.iter() {
            if let Some(problem) = &entry.problem
                && problem.counts
                && !entry.has_served()
            {
                not_ready.push(format!("{name}: {}", problem.reason));
            }
            if entry.fetching && entry.versions.is_empty() {
                loading = true;
                not_ready.push(format!("{name}: fetching from its source"));
            }
            for (version, state) in &entry.versions {
                match state {
                    VersionState::Loading { .. } => {
                        loading = true;
                        not_ready.push(format!("{name}/{version}: loading"));
                    }
                    VersionState::Failed {
                        reason,
                        required: true,
                        ..
                    } => not_ready.push(format!("{name}/{version}: {reason}")),
                    _ => {}
                }
            }
        }
        Readiness {
            ready: not_ready.is_empty(),
            loading,
            not_ready,
            draining,
        }
    }
}
