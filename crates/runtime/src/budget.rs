//! `--model-control-mode lazy` with a memory budget: models load on their first request (which
//! waits for the load, within its deadline), and when a load would go past the budget
//! (`--model-memory-limit`, `--max-loaded-models`) the least recently used idle models are
//! unloaded first: never one with requests in flight, never one `pinned = true` in config.toml.
//! Loads are one at a time, so each one's memory is the process's RSS growth across it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::registry::Runtime;
use crate::{LoadFault, RuntimeError};

/// What may be loaded at once; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    pub memory_bytes: Option<u64>,
    pub models: Option<usize>,
}

/// Lazy loading's state: one load at a time, and what each model costs and when it was used.
pub(crate) struct Lazy {
    budget: Budget,
    load: tokio::sync::Mutex<()>,
    epoch: Instant,
    /// Milliseconds since `epoch` of each loaded model's last request.
    last_used: RwLock<HashMap<String, Arc<AtomicU64>>>,
    /// Measured memory of each model's last load.
    memory: Mutex<HashMap<String, u64>>,
    pub loads: AtomicU64,
    pub evictions: AtomicU64,
}

/// Lazy loading's figures, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetFigures {
    pub loads: u64,
    pub evictions: u64,
    /// Each model's measured memory (its last load).
    pub memory: Vec<(String, u64)>,
}

impl Lazy {
    pub fn new(budget: Budget) -> Lazy {
        Lazy {
            budget,
            load: tokio::sync::Mutex::new(()),
            epoch: Instant::now(),
            last_used: RwLock::default(),
            memory: Mutex::default(),
            loads: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A request for `model` (the router calls it).
    pub fn touch(&self, model: &str) {
        let now = self.now_ms();
        let used = self.last_used.read().unwrap_or_else(|e| e.into_inner());
        match used.get(model) {
            Some(at) => at.store(now, Ordering::Relaxed),
            None => {
                drop(used);
                self.last_used
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(model.to_string(), Arc::new(AtomicU64::new(now)));
            }
        }
    }

    fn last_used(&self, model: &str) -> u64 {
        let used = self.last_used.read().unwrap_or_else(|e| e.into_inner());
        used.get(model).map_or(0, |at| at.load(Ordering::Relaxed))
    }

    pub fn memory_of(&self, model: &str) -> Option<u64> {
        let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.get(model).copied()
    }

    /// What a load of `model` will likely cost: its last load's, else the average one's.
    fn estimate(&self, model: &str) -> u64 {
        let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.get(model).copied().unwrap_or_else(|| {
            let n = memory.len() as u64;
            memory.values().sum::<u64>().checked_div(n).unwrap_or(0)
        })
    }

    pub fn figures(&self) -> BudgetFigures {
        let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let mut memory: Vec<(String, u64)> = memory.iter().map(|(k, v)| (k.clone(), *v)).collect();
        memory.sort();
        BudgetFigures {
            loads: self.loads.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            memory,
        }
    }
}

/// The process's resident memory, from /proc (0 where it cannot be read).
fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

impl Runtime {
    /// Lazy loading under `budget` (with `--model-control-mode lazy`).
    pub fn with_budget(self, budget: Budget) -> Runtime {
        Runtime {
            lazy: Some(Arc::new(Lazy::new(budget))),
            ..self
        }
    }

    /// Lazy loading's counts and each model's measured memory; `None` unless lazy.
    pub fn budget_figures(&self) -> Option<BudgetFigures> {
        self.lazy.as_ref().map(|l| l.figures())
    }

    /// Whether a request that could not be routed (`e`) should load `model` and try again.
    pub(crate) fn loads_on_demand(&self, model: &str, e: &RuntimeError) -> bool {
        self.lazy.is_some()
            && matches!(
                e,
                RuntimeError::UnknownModel(_) | RuntimeError::NotReady { .. }
            )
            && self.require_in_repository(model).is_ok()
    }

    /// Loads `model` for a request waiting until `deadline`, making room under the budget
    /// first. Concurrent first requests for one model trigger one load.
    pub(crate) async fn load_on_demand(
        self: &Arc<Self>,
        model: &str,
        deadline: Option<Instant>,
    ) -> Result<(), RuntimeError> {
        let Some(lazy) = self.lazy.clone() else {
            return Ok(());
        };
        // A task of its own: a request that gives up must not abort a load half-way.
        let (runtime, name) = (Arc::clone(self), model.to_string());
        let load = tokio::spawn(async move {
            let _one = lazy.load.lock().await;
            if runtime.serves(&name) {
                return Ok(());
            }
            runtime.make_room(&lazy, &name).await;
            let before = rss_bytes();
            let loaded = runtime.load_lazily(&name).await;
            let grown = rss_bytes().saturating_sub(before);
            if loaded.is_ok() {
                lazy.loads.fetch_add(1, Ordering::Relaxed);
                lazy.memory
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.clone(), grown);
                lazy.touch(&name);
                tracing::info!(model = %name, memory_bytes = grown, "loaded on demand");
            }
            loaded
        });
        let waited = Instant::now();
        let joined = match deadline {
            Some(d) => tokio::time::timeout(d.saturating_duration_since(Instant::now()), load)
                .await
                .map_err(|_| RuntimeError::TimedOut {
                    model: model.to_string(),
                    waited_us: waited.elapsed().as_micros(),
                })?,
            None => load.await,
        };
        joined.unwrap_or_else(|e| {
            Err(RuntimeError::LoadFailed {
                model: model.to_string(),
                reason: format!("the load task crashed: {e}"),
                fault: LoadFault::Server,
            })
        })
    }

    /// Whether some version of `model` serves.
    fn serves(&self, model: &str) -> bool {
        self.read().get(model).is_some_and(|e| e.has_served())
    }

    /// Unloads the least recently used idle models until `model` fits the budget (or nothing
    /// more may go: then it loads over the budget, and says so).
    async fn make_room(self: &Arc<Self>, lazy: &Lazy, model: &str) {
        let need = lazy.estimate(model);
        loop {
            // The loaded models, each with whether it may go: not pinned (its config, as
            // loaded) and no request in flight.
            let loaded: Vec<(String, bool)> = self
                .read()
                .iter()
                .filter(|(name, e)| name.as_str() != model && e.has_served())
                .map(|(name, e)| {
                    let mut serving = e.versions.values().filter_map(|v| v.serving());
                    let evictable =
                        serving.all(|load| !load.spec().config.pinned && load.inflight() == 0);
                    (name.clone(), evictable)
                })
                .collect();
            let used: u64 = loaded.iter().map(|(m, _)| lazy.estimate(m)).sum();
            let fits_count = lazy.budget.models.is_none_or(|n| loaded.len() < n);
            let fits_memory = lazy
                .budget
                .memory_bytes
                .is_none_or(|limit| used + need <= limit);
            if fits_count && fits_memory {
                return;
            }
            let victim = loaded
                .iter()
                .filter(|(_, evictable)| *evictable)
                .min_by_key(|(m, _)| lazy.last_used(m))
                .map(|(m, _)| m.clone());
            let Some(victim) = victim else {
                tracing::warn!(
                    model,
                    loaded = loaded.len(),
                    used_bytes = used,
                    "over the model budget: every loaded model is pinned or busy"
                );
                return;
            };
            // Returns once the victim's memory went back (unless a request still holds it).
            self.evict(&victim).await;
            lazy.evictions.fetch_add(1, Ordering::Relaxed);
            lazy.last_used
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&victim);
            tracing::info!(model = %victim, "unloaded to make room");
        }
    }
}
