//! Getting model versions into and out of service: start-up loading, polling the repository, the
//! load/unload API. A new or reloaded version is loaded and warmed up beside the one serving, then
//! swapped in under the registry lock; requests already holding the old one finish on it, and its
//! memory is freed when the last of them is answered. Loads run on blocking threads, never on the
//! request path.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use inferd_core::{LoadedModel, ModelConfig};

use crate::loader::LoadError;
use crate::memory::Trimmer;
use crate::registry::{ControlMode, Fingerprint, Problem, Runtime, Update, VersionState};
use crate::{ModelSpec, RuntimeError, ServedModel, fingerprint, loader, repository};

/// A model's versions fetched from its source into the cache.
struct Fetched {
    dir: PathBuf,
    /// The one version to serve (an MLflow alias's), when the source decides.
    pinned: Option<u64>,
}

/// How long one fetch from a source may take.
const SOURCE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// What set a load off; decides whether its failure counts against server readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// Models the server was started with: all must load (strict readiness).
    Startup,
    /// A change on disk: a failed update does not count while earlier versions keep serving.
    Poll,
    /// The load API: the caller gets the failure; readiness is not affected.
    Api,
}

/// What the model directory asks for.
enum Plan {
    /// The directory is gone.
    Gone,
    /// Nothing can load: the reason.
    Problem(String),
    /// A cross-model endpoint: no versions, a split over other models.
    Endpoint(Box<ModelConfig>),
    Load {
        config: Box<ModelConfig>,
        dir: PathBuf,
        /// Versions the policy selects, with the fingerprint of their files and config.
        wanted: Vec<(u64, u64)>,
    },
}

type Outcome = (u64, Result<ServedModel, LoadError>);

impl Runtime {
    /// Loads every model of the repository, in parallel. A model that fails is recorded with its
    /// reason and logged; the others serve regardless. Fails only if the repository is unreadable.
    pub async fn load_repository(self: &Arc<Self>) -> std::io::Result<()> {
        self.load_startup(&["*".to_string()]).await
    }

    /// Start-up loading: every model in `none` and `poll` modes; in `explicit` mode only the
    /// models named (`*`: all).
    pub async fn load_startup(self: &Arc<Self>, names: &[String]) -> std::io::Result<()> {
        let dirs = repository::scan(&self.repository)?;
        if self.control == ControlMode::Lazy {
            // Only what must always be resident; the rest loads on its first request.
            let pinned = dirs
                .into_iter()
                .filter(|n| {
                    names.contains(n)
                        || ModelConfig::load_from_dir(&self.repository.join(n))
                            .is_ok_and(|c| c.pinned)
                })
                .collect();
            self.sync_phased(pinned, Trigger::Startup).await;
            self.startup_done
                .store(true, std::sync::atomic::Ordering::Release);
            return Ok(());
        }
        let all = self.control != ControlMode::Explicit || names.iter().any(|n| n == "*");
        for missing in names.iter().filter(|n| *n != "*" && !dirs.contains(n)) {
            tracing::error!(
                model = %missing,
                "asked to load a model that is not in the repository {}",
                self.repository.display()
            );
        }
        let names: Vec<String> = dirs
            .into_iter()
            .filter(|n| all || names.contains(n))
            .collect();
        self.sync_phased(names, Trigger::Startup).await;
        self.startup_done
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// One rescan of the repository (poll mode): new and changed versions are loaded, versions
    /// and models that left the repository are unloaded. Unchanged ones are not touched.
    pub async fn poll(self: &Arc<Self>) -> std::io::Result<()> {
        let on_disk = repository::scan(&self.repository)?;
        let gone: Vec<String> = self
            .read()
            .keys()
            .filter(|n| !on_disk.contains(n))
            .cloned()
            .collect();
        for name in gone {
            let _guard = self.model_lock(&name).lock_owned().await;
            self.remove(&name);
        }
        self.sync_phased(on_disk, Trigger::Poll).await;
        Ok(())
    }

    /// Models first, then ensembles (those whose steps are ensembles after them), then
    /// cross-model endpoints: each checks the models it names as they serve.
    async fn sync_phased(self: &Arc<Self>, names: Vec<String>, trigger: Trigger) {
        let configs: BTreeMap<String, Option<ModelConfig>> = names
            .into_iter()
            .map(|n| {
                let config = ModelConfig::load_from_dir(&self.repository.join(&n)).ok();
                (n, config)
            })
            .collect();
        let mut phases: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (name, config) in &configs {
            let phase = match config {
                Some(c) if c.is_endpoint() => usize::MAX,
                _ => ensemble_depth(name, &configs, 0),
            };
            phases.entry(phase).or_default().push(name.clone());
        }
        for (_, names) in phases {
            self.sync_all(names, trigger).await;
        }
    }

    /// The load API: loads the model, or reloads what changed since its last load. `config`
    /// replaces the model's config.toml for this load. Returns once the model serves.
    pub async fn load_model(
        self: &Arc<Self>,
        name: &str,
        config: Option<ModelConfig>,
    ) -> Result<(), RuntimeError> {
        self.require_explicit("load")?;
        self.require_in_repository(name)?;
        self.load_steps(name, config.as_ref()).await;
        // A task of its own: a client that hangs up must not cancel a load half-way.
        let (runtime, model) = (Arc::clone(self), name.to_string());
        tokio::spawn(async move { runtime.sync(&model, config, Trigger::Api).await })
            .await
            .unwrap_or_else(|e| Err(LoadError::server(format!("the load task crashed: {e}"))))
            .map_err(|e| RuntimeError::LoadFailed {
                model: name.to_string(),
                reason: e.reason,
                fault: e.fault,
            })
    }

    /// Loading an ensemble loads the step models that do not serve yet (as Triton does);
    /// a step that fails is reported by the ensemble's own load.
    async fn load_steps(self: &Arc<Self>, name: &str, config: Option<&ModelConfig>) {
        let config = match config {
            Some(c) => c.clone(),
            None => match ModelConfig::load_from_dir(&self.repository.join(name)) {
                Ok(c) => c,
                Err(_) => return,
            },
        };
        if !config.is_ensemble() {
            return;
        }
        let Some(ensemble) = config.ensemble else {
            return;
        };
        for step in ensemble.step {
            let serves = self
                .read()
                .get(&step.model)
                .is_some_and(|e| e.has_served() || e.endpoint);
            if !serves
                && step.model != name
                && self.require_in_repository(&step.model).is_ok()
                && let Err(e) = Box::pin(self.load_model(&step.model, None)).await
            {
                tracing::warn!(model = name, step = %step.model, "a step model did not load: {e}");
            }
        }
    }

    /// A load on demand (lazy mode): as the load API, for the router.
    pub(crate) async fn load_lazily(self: &Arc<Self>, name: &str) -> Result<(), RuntimeError> {
        self.sync(name, None, Trigger::Api)
            .await
            .map_err(|e| RuntimeError::LoadFailed {
                model: name.to_string(),
                reason: e.reason,
                fault: e.fault,
            })
    }

    /// The unload API: every version leaves service at once; requests they already accepted
    /// finish, then their memory is freed.
    pub async fn unload_model(self: &Arc<Self>, name: &str) -> Result<(), RuntimeError> {
        self.require_explicit("unload")?;
        let known = self.read().contains_key(name);
        if !known {
            return self.require_in_repository(name);
        }
        self.evict(name).await;
        Ok(())
    }

    /// Takes every version of `name` out of service (unload, or eviction under a budget).
    pub(crate) async fn evict(self: &Arc<Self>, name: &str) {
        let _guard = self.model_lock(name).lock_owned().await;
        let mut retired = Vec::new();
        {
            let mut models = self.write();
            if let Some(entry) = models.get_mut(name) {
                entry.problem = None;
                let versions: Vec<u64> = entry.versions.keys().copied().collect();
                retired.extend(versions.into_iter().filter_map(|v| entry.retire(v)));
            }
        }
        tracing::info!(model = name, versions = retired.len(), "model unloaded");
        // Dropping a version joins its instance threads and returns its memory to the OS: not
        // on an async worker, and at idle priority, so that models serving keep the CPU.
        // Awaited, so that a load after an eviction measures its own memory (lazy mode) and an
        // unload has freed what it could when it answers.
        if !retired.is_empty() {
            let (done, freed) = tokio::sync::oneshot::channel::<()>();
            let dropper = std::thread::Builder::new()
                .name("inferd-unload".into())
                .spawn(move || {
                    loader::lower_priority();
                    drop(retired);
                    let _ = done.send(());
                });
            if dropper.is_ok() {
                let _ = freed.await;
            }
        }
    }

    fn require_explicit(&self, what: &str) -> Result<(), RuntimeError> {
        match self.control {
            ControlMode::Explicit | ControlMode::Lazy => Ok(()),
            mode => Err(RuntimeError::ModelControl(format!(
                "cannot {what} models through the API: the server runs with --model-control-mode \
                 {}; start it with --model-control-mode explicit",
                match mode {
                    ControlMode::Poll => "poll (the repository's contents decide what is loaded)",
                    _ => "none (everything is loaded at start)",
                }
            ))),
        }
    }

    pub(crate) fn require_in_repository(&self, name: &str) -> Result<(), RuntimeError> {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && !name.contains(['/', '\\'])
            && self.repository.join(name).is_dir();
        if plain {
            Ok(())
        } else {
            Err(RuntimeError::UnknownModel(name.to_string()))
        }
    }

    fn model_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.model_locks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(locks.entry(name.to_string()).or_default())
    }

    async fn sync_all(self: &Arc<Self>, names: Vec<String>, trigger: Trigger) {
        // Detached tasks: dropping this future (shutdown) must not abort a load half-way and
        // leave its version LOADING.
        let tasks: Vec<_> = names
            .into_iter()
            .map(|name| {
                let runtime = Arc::clone(self);
                tokio::spawn(async move {
                    // Failures are logged and recorded in the index by sync itself.
                    let _ = runtime.sync(&name, None, trigger).await;
                })
            })
            .collect();
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!("a model load task crashed: {e}");
            }
        }
    }

    /// Brings one model in line with its directory: loads versions that are new, changed or
    /// (from the API) failed before, swaps them in, and retires versions no longer selected.
    /// Err lists what could not load.
    async fn sync(
        self: &Arc<Self>,
        name: &str,
        config: Option<ModelConfig>,
        trigger: Trigger,
    ) -> Result<(), LoadError> {
        let _guard = self.model_lock(name).lock_owned().await;
        let fetched = match self.fetch_source(name, config.as_ref()).await {
            Ok(fetched) => fetched,
            Err(problem) => return Err(self.record_problem(name, problem, trigger).into()),
        };
        let plan = {
            let (runtime, model) = (Arc::clone(self), name.to_string());
            tokio::task::spawn_blocking(move || runtime.plan(&model, config, fetched))
                .await
                .map_err(|e| LoadError::server(format!("planning the load crashed: {e}")))?
        };
        let (config, dir, wanted) = match plan {
            Plan::Gone => {
                self.remove(name);
                return Err(format!("{} is gone", self.repository.join(name).display()).into());
            }
            Plan::Problem(problem) => {
                return Err(self.record_problem(name, problem, trigger).into());
            }
            Plan::Endpoint(config) => return self.install_endpoint(name, *config, trigger),
            Plan::Load {
                config,
                dir,
                wanted,
            } => (config, dir, wanted),
        };
        let (to_load, had_served) =
            self.mark_loading(name, &wanted, config.traffic.clone(), trigger);
        if config.is_ensemble() {
            // Nothing to read or start: the steps are checked against what serves now.
            let outcomes = to_load
                .into_iter()
                .map(|version| {
                    let loaded = self.load_ensemble(name, version, &config);
                    if loaded.is_ok() {
                        tracing::info!(model = name, version, "ensemble ready");
                    }
                    (version, loaded.map_err(LoadError::from))
                })
                .collect();
            return self.install(name, &wanted, outcomes, had_served, trigger);
        }
        let mut loads = Vec::with_capacity(to_load.len());
        for version in to_load {
            let (runtime, model, dir, config) = (
                Arc::clone(self),
                name.to_string(),
                dir.clone(),
                ModelConfig::clone(&config),
            );
            let load = loader::spawn(name, move || {
                runtime.load_version(&model, &dir, version, &config)
            });
            loads.push((version, load));
        }
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(loads.len());
        for (version, load) in loads {
            let outcome = match load.await {
                Ok(Ok((spec, model))) => {
                    start_instances(spec, model, dir.clone(), self.trimmer.clone()).await
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(LoadError::server("the load thread ended without an answer")),
            };
            outcomes.push((version, outcome));
        }
        self.install(name, &wanted, outcomes, had_served, trigger)
    }

    fn plan(&self, name: &str, config: Option<ModelConfig>, fetched: Option<Fetched>) -> Plan {
        let dir = self.repository.join(name);
        if !dir.is_dir() {
            return Plan::Gone;
        }
        let config = match config.map_or_else(|| ModelConfig::load_from_dir(&dir), Ok) {
            Ok(config) => config,
            Err(e) => return Plan::Problem(e.to_string()),
        };
        if config.is_endpoint() {
            return Plan::Endpoint(Box::new(config));
        }
        // Versions from a source live in its cache; the model's config.toml stays here.
        let (dir, pinned) = match fetched {
            Some(f) => (f.dir, f.pinned),
            None => (dir, None),
        };
        let versions = match repository::versions(&dir) {
            // An ensemble has no files: version directories are optional (Triton wants an
            // empty `1/`), and without any it is version 1.
            Ok(versions) if versions.is_empty() && config.is_ensemble() => vec![1],
            Ok(versions) => versions,
            Err(e) => return Plan::Problem(format!("cannot read {}: {e}", dir.display())),
        };
        let selected = match pinned {
            Some(v) if versions.contains(&v) => vec![v],
            _ => config.version_policy.select(&versions),
        };
        if let Some(traffic) = &config.traffic {
            let named = traffic
                .arms()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(t, _)| match t {
                    inferd_core::ArmTarget::Version(v) => Some(v),
                    inferd_core::ArmTarget::Model(_) => None,
                })
                .chain(traffic.shadows().into_iter().map(|(v, _)| v));
            for v in named {
                if !selected.contains(&v) {
                    return Plan::Problem(format!(
                        "config.toml's [traffic] names version {v}, which the version policy does \
                         not load (versions loaded: {selected:?})"
                    ));
                }
            }
        }
        if versions.is_empty() {
            return Plan::Problem(format!(
                "no version directories in {} (expected {}/1/model.onnx)",
                dir.display(),
                name
            ));
        }
        if selected.is_empty() {
            return Plan::Problem(format!(
                "version policy {:?} selects none of the versions {versions:?}",
                config.version_policy
            ));
        }
        // Debug output is deterministic: a config change (not a comment) changes it.
        let mut config_hash = DefaultHasher::new();
        format!("{config:?}").hash(&mut config_hash);
        let mut wanted = Vec::with_capacity(selected.len());
        for version in selected {
            let version_dir = dir.join(version.to_string());
            if config.is_ensemble() && !version_dir.exists() {
                wanted.push((version, config_hash.finish()));
                continue;
            }
            match fingerprint::of_dir(&self.fingerprints, &version_dir) {
                Ok(files) => {
                    let mut hasher = config_hash.clone();
                    files.hash(&mut hasher);
                    wanted.push((version, hasher.finish()));
                }
                Err(e) => {
                    return Plan::Problem(format!("cannot read {}: {e}", version_dir.display()));
                }
            }
        }
        Plan::Load {
            config: Box::new(config),
            dir,
            wanted,
        }
    }

    /// Brings the cache of a model with a `source` up to date. An unreachable source leaves the
    /// cached versions serving (logged); with nothing cached it is the model's problem.
    async fn fetch_source(
        &self,
        name: &str,
        config: Option<&ModelConfig>,
    ) -> Result<Option<Fetched>, String> {
        let source = match config {
            Some(c) => c.source.clone(),
            None => ModelConfig::load_from_dir(&self.repository.join(name))
                .ok()
                .and_then(|c| c.source),
        };
        let Some(text) = source else {
            return Ok(None);
        };
        self.write().entry(name.to_string()).or_default().fetching = true;
        let result = self.fetch_from(name, text).await;
        if let Some(entry) = self.write().get_mut(name) {
            entry.fetching = false;
        }
        result
    }

    async fn fetch_from(&self, name: &str, text: String) -> Result<Option<Fetched>, String> {
        let source = crate::source::Source::parse(&text)?;
        let dir = crate::source::cache_dir(&self.cache_root, name);
        let fetched = tokio::time::timeout(SOURCE_TIMEOUT, crate::source::sync(&source, &dir))
            .await
            .unwrap_or_else(|_| Err(format!("no answer in {} s", SOURCE_TIMEOUT.as_secs())));
        match fetched {
            Ok(synced) => {
                if let Some(event) = synced.event {
                    self.note(name, &text, &event).await;
                }
            }
            Err(e) => {
                let cached = repository::versions(&dir).is_ok_and(|v| !v.is_empty());
                if !cached {
                    return Err(format!("cannot fetch the model from {text}: {e}"));
                }
                tracing::warn!(model = name, source = %text, "source unreachable; the cached versions serve: {e}");
            }
        }
        let pinned = match source {
            crate::source::Source::Mlflow { .. } => crate::source::mlflow::served(&dir),
            crate::source::Source::S3 { .. } => None,
        };
        Ok(Some(Fetched { dir, pinned }))
    }

    /// Records a source's move in the history and tells the observers (the audit log).
    async fn note(&self, name: &str, source: &str, event: &str) {
        tracing::info!(model = name, "{event}");
        for observer in &self.observers {
            observer.event(name, event);
        }
        let change = crate::state::Change {
            model: name.to_string(),
            kind: crate::state::Kind::Source,
            name: source.to_string(),
            value: Some(event.to_string()),
            principal: String::new(),
            reason: event.to_string(),
        };
        if let Err(e) = self.store.apply(change).await {
            tracing::error!(model = name, "cannot record the source change: {e}");
        }
    }

    /// Fetches every model with a source again and reloads those whose source changed.
    pub async fn refresh_sources(self: &Arc<Self>) {
        let names: Vec<String> = self.read().keys().cloned().collect();
        for name in names {
            let has_source = ModelConfig::load_from_dir(&self.repository.join(&name))
                .is_ok_and(|c| c.source.is_some());
            if has_source {
                // Failures are logged and recorded by sync itself.
                let _ = self.sync(&name, None, Trigger::Poll).await;
            }
        }
    }

    /// Records why nothing of the model can load; earlier loads keep serving.
    fn record_problem(&self, name: &str, problem: String, trigger: Trigger) -> String {
        let mut models = self.write();
        let entry = models.entry(name.to_string()).or_default();
        let serving = entry.has_served();
        // Counts while nothing serves, except for API loads (their caller got the error).
        entry.problem = Some(Problem {
            reason: problem.clone(),
            counts: trigger != Trigger::Api && !serving,
        });
        drop(models);
        tracing::error!(
            model = name,
            serving_previous = serving,
            "model cannot be loaded: {problem}"
        );
        problem
    }

    /// Marks what will load: new versions as LOADING; reloaded ones keep serving meanwhile.
    /// Returns the versions to load and whether the model served anything before.
    fn mark_loading(
        &self,
        name: &str,
        wanted: &[(u64, Fingerprint)],
        configured: Option<inferd_core::TrafficPolicy>,
        trigger: Trigger,
    ) -> (Vec<u64>, bool) {
        let mut models = self.write();
        let entry = models.entry(name.to_string()).or_default();
        entry.problem = None;
        entry.endpoint = false;
        entry.configured = configured;
        let had_served = entry.has_served();
        let mut to_load = Vec::new();
        for &(version, attempt) in wanted {
            let state = entry
                .versions
                .entry(version)
                .or_insert(VersionState::Unloaded);
            // Polling retries only what changed since the last attempt; an explicit load also
            // retries failures and anything that differs from what serves.
            let changed = state.attempted() != Some(attempt);
            let serves_it = matches!(state, VersionState::Serving { fingerprint, .. } if *fingerprint == attempt);
            let retry = trigger != Trigger::Poll && !serves_it;
            if !changed && !retry {
                if let VersionState::Serving { update, .. } = state {
                    // What serves is what the repository asks for: older update failures no
                    // longer apply.
                    *update = Update::None;
                }
                continue;
            }
            match state {
                VersionState::Serving { update, .. } => *update = Update::Loading { attempt },
                other => *other = VersionState::Loading { attempt },
            }
            to_load.push(version);
        }
        (to_load, had_served)
    }

    /// Swaps finished loads in and retires versions the policy no longer selects, unless none of
    /// the selected ones could load (then the older ones keep serving).
    fn install(
        &self,
        name: &str,
        wanted: &[(u64, Fingerprint)],
        outcomes: Vec<Outcome>,
        had_served: bool,
        trigger: Trigger,
    ) -> Result<(), LoadError> {
        let had_loads = !outcomes.is_empty();
        let mut released = Vec::new();
        let mut fault = crate::LoadFault::Model;
        let mut models = self.write();
        let entry = models.entry(name.to_string()).or_default();
        for (version, outcome) in outcomes {
            let Some(state) = entry.versions.get(&version) else {
                continue;
            };
            let Some(attempt) = state.attempted() else {
                continue;
            };
            let serving = state.serving().is_some();
            match outcome {
                Ok(served) => {
                    released.extend(entry.install(version, Arc::new(served), attempt));
                }
                Err(e) if serving => {
                    tracing::error!(
                        model = name,
                        version,
                        "reload failed; the previous load keeps serving: {}",
                        e.reason
                    );
                    if let Some(VersionState::Serving { update, .. }) =
                        entry.versions.get_mut(&version)
                    {
                        *update = Update::Failed {
                            attempt,
                            reason: e.reason,
                        };
                    }
                }
                Err(e) => {
                    tracing::error!(model = name, version, "model failed to load: {}", e.reason);
                    if e.fault == crate::LoadFault::Server {
                        fault = e.fault;
                    }
                    let required = match trigger {
                        Trigger::Startup => true,
                        Trigger::Poll => !had_served,
                        Trigger::Api => false,
                    };
                    entry.versions.insert(
                        version,
                        VersionState::Failed {
                            attempt,
                            reason: e.reason,
                            required,
                        },
                    );
                }
            }
        }
        let is_wanted = |v: &u64| wanted.iter().any(|(w, _)| w == v);
        let wanted_serves = entry
            .versions
            .iter()
            .any(|(v, s)| is_wanted(v) && s.serving().is_some());
        let others: Vec<u64> = entry
            .versions
            .keys()
            .copied()
            .filter(|v| !is_wanted(v))
            .collect();
        for version in others {
            if wanted_serves {
                released.extend(entry.retire(version));
            } else if entry.versions[&version].serving().is_some() {
                tracing::warn!(
                    model = name,
                    version,
                    "keeps serving: no newer version could load"
                );
            }
        }
        let failures: Vec<String> = wanted
            .iter()
            .filter_map(|(v, _)| match entry.versions.get(v)? {
                VersionState::Failed { reason, .. }
                | VersionState::Serving {
                    update: Update::Failed { reason, .. },
                    ..
                } => Some(format!("version {v}: {reason}")),
                VersionState::Loading { .. } | VersionState::Unloaded => {
                    Some(format!("version {v}: did not load"))
                }
                _ => None,
            })
            .collect();
        drop(models);
        // The old loads are dropped here, outside the lock; each frees its memory once its
        // last request is answered.
        drop(released);
        if had_loads {
            self.trimmer.request();
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(LoadError {
                reason: failures.join("; "),
                fault,
            })
        }
    }

    /// A cross-model endpoint takes effect once the models it names serve and agree.
    fn install_endpoint(
        &self,
        name: &str,
        config: ModelConfig,
        trigger: Trigger,
    ) -> Result<(), LoadError> {
        let traffic = config.traffic.unwrap_or_default();
        let checked = crate::traffic::check_policy(name, &traffic, &self.read());
        if let Err(e) = checked {
            let reason = format!("cross-model endpoint refused: {e}");
            return Err(self.record_problem(name, reason, trigger).into());
        }
        let mut models = self.write();
        let entry = models.entry(name.to_string()).or_default();
        entry.problem = None;
        entry.endpoint = true;
        entry.configured = Some(traffic);
        tracing::info!(model = name, "cross-model endpoint ready");
        Ok(())
    }

    /// Forgets a model that left the repository; its loads finish their requests first.
    fn remove(&self, name: &str) {
        let entry = self.write().remove(name);
        if entry.is_some() {
            tracing::info!(model = name, "model left the repository; unloaded");
        }
        self.fingerprints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(&self.repository.join(name));
        drop(entry);
    }

    fn load_version(
        &self,
        name: &str,
        dir: &Path,
        version: u64,
        config: &ModelConfig,
    ) -> Result<(ModelSpec, Arc<dyn LoadedModel>), LoadError> {
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
        let mut spec = ModelSpec::derive(
            name,
            version,
            (backend.name(), backend.platform()),
            config,
            model.signature(),
        )?;
        spec.read_labels(dir)?;
        let model: Arc<dyn LoadedModel> = Arc::from(model);
        tracing::info!(
            model = name,
            version,
            backend = backend.name(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        Ok((spec, model))
    }
}

/// 0 for a model, 1 for an ensemble of models, 2 for one with an ensemble among its steps...
/// Bounded, so that a cycle between ensembles (refused when they load) cannot recurse forever.
fn ensemble_depth(
    name: &str,
    configs: &BTreeMap<String, Option<ModelConfig>>,
    seen: usize,
) -> usize {
    let Some(Some(config)) = configs.get(name) else {
        return 0;
    };
    let Some(ensemble) = config.ensemble.as_ref().filter(|_| seen < configs.len()) else {
        return 0;
    };
    1 + ensemble
        .step
        .iter()
        .map(|s| ensemble_depth(&s.model, configs, seen + 1))
        .max()
        .unwrap_or(0)
}

/// Starts the instance threads and runs the warmup. Not on the load thread: threads inherit
/// their creator's idle scheduling class, and instances must serve at normal priority.
async fn start_instances(
    spec: ModelSpec,
    model: Arc<dyn LoadedModel>,
    dir: PathBuf,
    trimmer: Trimmer,
) -> Result<ServedModel, LoadError> {
    tokio::task::spawn_blocking(move || {
        ServedModel::new(spec, model, &dir, trimmer).map_err(LoadError::from)
    })
    .await
    .unwrap_or_else(|e| {
        Err(LoadError::server(format!(
            "starting the model's instances crashed: {e}"
        )))
    })
}
