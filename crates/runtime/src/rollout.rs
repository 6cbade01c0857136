//! Canary rollouts with automatic promotion and rollback. A rollout moves unversioned traffic
//! from the baseline (the `production` version when the rollout starts) to the canary step by
//! step. Over each step's requests it compares the arms (error rate, p99 latency, and shadow
//! agreement when asked) and rolls back at once when the canary is worse than allowed, or
//! advances when the step's time is up with enough canary requests seen. After the last step
//! the `production` alias moves to the canary.
//!
//! The replica that starts a rollout runs it (its own traffic is what it measures); others
//! follow the stored weights. A rollout whose runner went quiet for long is taken over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use inferd_core::SplitArm;
use serde::{Deserialize, Serialize};

use crate::policy::PRODUCTION;
use crate::state::{Change, Kind};
use crate::time::rfc3339;
use crate::{Runtime, RuntimeError};

/// `POST /v2/models/{m}/rollout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutPlan {
    pub version: String,
    /// Canary shares in percent, rising; the last is normally 100.
    #[serde(default = "default_steps")]
    pub steps: Vec<f64>,
    #[serde(default = "default_step_seconds")]
    pub step_seconds: f64,
    /// Largest canary error rate above the baseline's (0.01 = one point).
    #[serde(default = "default_error_increase")]
    pub max_error_rate_increase: f64,
    /// Largest canary p99 latency over the baseline's.
    #[serde(default = "default_p99_ratio")]
    pub max_p99_ratio: f64,
    /// Canary requests a step needs before it is judged.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// Least share of matching shadow comparisons of the canary, when it ran as a shadow first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_agreement: Option<f64>,
}

fn default_steps() -> Vec<f64> {
    vec![5.0, 25.0, 50.0, 100.0]
}
/// The longest step a rollout may take: a year.
const MAX_STEP_SECONDS: f64 = 365.0 * 86_400.0;

fn default_step_seconds() -> f64 {
    60.0
}
fn default_error_increase() -> f64 {
    0.01
}
fn default_p99_ratio() -> f64 {
    1.5
}
fn default_min_requests() -> u64 {
    200
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Running,
    Paused,
    Promoted,
    RolledBack,
}

/// What one arm did over a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmFigures {
    pub version: u64,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub p99_us: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub time: String,
    pub step: usize,
    pub weight: f64,
    pub action: String,
    pub reason: String,
    pub principal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<ArmFigures>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<ArmFigures>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<f64>,
}

/// A rollout as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub baseline: u64,
    pub canary: u64,
    pub plan: RolloutPlan,
    pub state: RolloutState,
    /// Index into `plan.steps`.
    pub step: usize,
    /// When the current step began (ms since the epoch).
    pub step_started_ms: u64,
    /// The replica running it.
    pub owner: String,
    pub decisions: Vec<Decision>,
}

impl Rollout {
    pub fn weight(&self) -> f64 {
        match self.state {
            RolloutState::Running | RolloutState::Paused => {
                self.plan.steps.get(self.step).copied().unwrap_or(100.0)
            }
            RolloutState::Promoted => 100.0,
            RolloutState::RolledBack => 0.0,
        }
    }

    /// The split it imposes while active: baseline first, canary last (so a rising canary
    /// share only moves sticky keys into the canary).
    pub fn split(&self) -> Option<Vec<SplitArm>> {
        matches!(self.state, RolloutState::Running | RolloutState::Paused).then(|| {
            let w = self.weight();
            vec![
                SplitArm {
                    version: Some(self.baseline.to_string()),
                    model: None,
                    weight: 100.0 - w,
                },
                SplitArm {
                    version: Some(self.canary.to_string()),
                    model: None,
                    weight: w,
                },
            ]
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Latency buckets ~5% apart from 10 us to ~100 s: fine enough to judge a p99 ratio of 1.5.
const BUCKETS: usize = 330;

fn bucket(us: f64) -> usize {
    if us <= 10.0 {
        return 0;
    }
    (((us / 10.0).ln() / 1.05f64.ln()) as usize + 1).min(BUCKETS - 1)
}

fn bucket_top(i: usize) -> f64 {
    10.0 * 1.05f64.powi(i as i32)
}

/// Requests, errors and latencies of one arm over the current step.
#[derive(Debug, Clone)]
struct Meter {
    requests: u64,
    errors: u64,
    latency: Vec<u64>,
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            requests: 0,
            errors: 0,
            latency: vec![0; BUCKETS],
        }
    }
}

impl Meter {
    fn figures(&self, version: u64) -> ArmFigures {
        ArmFigures {
            version,
            requests: self.requests,
            errors: self.errors,
            error_rate: if self.requests == 0 {
                0.0
            } else {
                self.errors as f64 / self.requests as f64
            },
            p99_us: self.p99(),
        }
    }

    fn p99(&self) -> Option<f64> {
        let n: u64 = self.latency.iter().sum();
        if n == 0 {
            return None;
        }
        let rank = (n as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        for (i, c) in self.latency.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_top(i));
            }
        }
        None
    }
}

/// The meters of running rollouts on this replica: (model, version) -> meter.
#[derive(Default)]
pub(crate) struct Meters(Mutex<HashMap<(String, u64), Meter>>);

impl Meters {
    pub fn record(&self, model: &str, version: u64, ok: bool, latency: Duration) {
        let mut meters = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let m = meters.entry((model.to_string(), version)).or_default();
        m.requests += 1;
        if !ok {
            m.errors += 1;
        }
        m.latency[bucket(latency.as_secs_f64() * 1e6)] += 1;
    }

    fn take(&self, model: &str, version: u64) -> Meter {
        let mut meters = self.0.lock().unwrap_or_else(|e| e.into_inner());
        meters
            .remove(&(model.to_string(), version))
            .unwrap_or_default()
    }

    fn peek(&self, model: &str, version: u64) -> Meter {
        let meters = self.0.lock().unwrap_or_else(|e| e.into_inner());
        meters
            .get(&(model.to_string(), version))
            .cloned()
            .unwrap_or_default()
    }
}

/// A hand-made change to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    Promote,
    Rollback,
    Pause,
    Resume,
}

/// A step's verdict.
enum Verdict {
    Wait,
    Advance(String),
    Rollback(String),
}

impl Runtime {
    /// Starts a rollout of `plan.version` from the current production version.
    pub async fn start_rollout(
        &self,
        model: &str,
        plan: RolloutPlan,
        principal: &str,
    ) -> Result<Rollout, RuntimeError> {
        let invalid = RuntimeError::InvalidInput;
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if plan.steps.is_empty()
            || plan
                .steps
                .iter()
                .any(|s| !(0.0..=100.0).contains(s) || !s.is_finite())
            || plan.steps.windows(2).any(|w| w[1] < w[0])
        {
            return Err(invalid(format!(
                "steps {:?} must be rising percentages between 0 and 100",
                plan.steps
            )));
        }
        // A step is a Duration: past a year is a mistake, and past Duration's range a crash.
        if !positive(plan.step_seconds) || plan.step_seconds > MAX_STEP_SECONDS {
            return Err(invalid(format!(
                "step_seconds must be a positive number of seconds, at most {MAX_STEP_SECONDS}"
            )));
        }
        let increase = plan.max_error_rate_increase;
        if !(positive(plan.max_p99_ratio) && increase.is_finite() && increase >= 0.0) {
            return Err(invalid(
                "max_p99_ratio must be positive and max_error_rate_increase 0 or more".into(),
            ));
        }
        if let Some(active) = self
            .policies
            .read()
            .get(model)
            .and_then(|p| p.rollout.as_ref())
            .filter(|r| matches!(r.state, RolloutState::Running | RolloutState::Paused))
        {
            return Err(invalid(format!(
                "a rollout of version {} is already {}; promote or roll it back first",
                active.canary,
                if active.state == RolloutState::Paused {
                    "paused"
                } else {
                    "running"
                }
            )));
        }
        let (baseline, canary) = {
            let models = self.read();
            let entry = models
                .get(model)
                .ok_or_else(|| RuntimeError::UnknownModel(model.to_string()))?;
            let aliases = self.policies.read().get(model).map(|p| p.aliases.clone());
            let canary = crate::traffic::resolve(model, aliases.as_ref(), &plan.version)?;
            let state =
                entry
                    .versions
                    .get(&canary)
                    .ok_or_else(|| RuntimeError::UnknownVersion {
                        model: model.to_string(),
                        version: plan.version.clone(),
                    })?;
            if state.serving().is_none() {
                return Err(invalid(format!(
                    "the canary must be ready: {} of model '{model}'",
                    state.not_serving(canary)
                )));
            }
            let baseline = crate::router::default_load(model, entry, self.production(model))?
                .spec()
                .version;
            (baseline, canary)
        };
        if baseline == canary {
            return Err(invalid(format!(
                "version {canary} already serves model '{model}' by default; roll out another version"
            )));
        }
        let mut rollout = Rollout {
            baseline,
            canary,
            plan,
            state: RolloutState::Running,
            step: 0,
            step_started_ms: now_ms(),
            owner: self.replica.clone(),
            decisions: Vec::new(),
        };
        rollout.decisions.push(Decision {
            time: rfc3339(SystemTime::now()),
            step: 0,
            weight: rollout.weight(),
            action: "start".into(),
            reason: format!("rollout of version {canary} from version {baseline}"),
            principal: principal.to_string(),
            baseline: None,
            canary: None,
            agreement: None,
        });
        self.rollout_meters.take(model, baseline);
        self.rollout_meters.take(model, canary);
        self.store_rollout(model, &rollout, principal, "rollout started")
            .await?;
        Ok(rollout)
    }

    /// The model's rollout, with the current step's figures so far.
    pub fn rollout(&self, model: &str) -> Result<Option<RolloutView>, RuntimeError> {
        self.require_model(model)?;
        let rollout = self
            .policies
            .read()
            .get(model)
            .and_then(|p| p.rollout.clone());
        Ok(rollout.map(|r| RolloutView {
            weight: r.weight(),
            current: CurrentFigures {
                baseline: self
                    .rollout_meters
                    .peek(model, r.baseline)
                    .figures(r.baseline),
                canary: self.rollout_meters.peek(model, r.canary).figures(r.canary),
                agreement: self.shadow_agreement(model, r.canary),
            },
            rollout: r,
        }))
    }

    /// Promote, roll back, pause or resume by hand.
    pub async fn act_on_rollout(
        &self,
        model: &str,
        action: RolloutAction,
        principal: &str,
    ) -> Result<Rollout, RuntimeError> {
        let mut rollout = self
            .policies
            .read()
            .get(model)
            .and_then(|p| p.rollout.clone())
            .ok_or_else(|| RuntimeError::InvalidInput(format!("model '{model}' has no rollout")))?;
        let active = matches!(rollout.state, RolloutState::Running | RolloutState::Paused);
        if !active {
            return Err(RuntimeError::InvalidInput(format!(
                "the rollout of version {} is over ({:?}); start a new one",
                rollout.canary, rollout.state
            )));
        }
        let (name, reason) = match action {
            RolloutAction::Promote => ("promote", "promoted by hand"),
            RolloutAction::Rollback => ("rollback", "rolled back by hand"),
            RolloutAction::Pause => ("pause", "paused by hand"),
            RolloutAction::Resume => ("resume", "resumed by hand"),
        };
        match action {
            RolloutAction::Promote => {
                self.promote(model, &mut rollout, principal, reason).await?;
                return Ok(rollout);
            }
            RolloutAction::Rollback => rollout.state = RolloutState::RolledBack,
            RolloutAction::Pause => rollout.state = RolloutState::Paused,
            RolloutAction::Resume => {
                rollout.state = RolloutState::Running;
                rollout.step_started_ms = now_ms();
                rollout.owner = self.replica.clone();
                self.rollout_meters.take(model, rollout.baseline);
                self.rollout_meters.take(model, rollout.canary);
            }
        }
        rollout.decisions.push(Decision {
            time: rfc3339(SystemTime::now()),
            step: rollout.step,
            weight: rollout.weight(),
            action: name.into(),
            reason: reason.into(),
            principal: principal.to_string(),
            baseline: None,
            canary: None,
            agreement: None,
        });
        self.store_rollout(model, &rollout, principal, reason)
            .await?;
        Ok(rollout)
    }

    async fn promote(
        &self,
        model: &str,
        rollout: &mut Rollout,
        principal: &str,
        reason: &str,
    ) -> Result<(), RuntimeError> {
        // The alias first: when the split goes, production already names the canary.
        self.change(Change {
            model: model.to_string(),
            kind: Kind::Alias,
            name: PRODUCTION.into(),
            value: Some(rollout.canary.to_string()),
            principal: principal.to_string(),
            reason: format!("{reason}: production -> version {}", rollout.canary),
        })
        .await?;
        rollout.state = RolloutState::Promoted;
        rollout.decisions.push(Decision {
            time: rfc3339(SystemTime::now()),
            step: rollout.step,
            weight: 100.0,
            action: "promote".into(),
            reason: reason.into(),
            principal: principal.to_string(),
            baseline: None,
            canary: None,
            agreement: None,
        });
        self.store_rollout(model, rollout, principal, reason).await
    }

    async fn store_rollout(
        &self,
        model: &str,
        rollout: &Rollout,
        principal: &str,
        reason: &str,
    ) -> Result<(), RuntimeError> {
        self.change(Change {
            model: model.to_string(),
            kind: Kind::Rollout,
            name: String::new(),
            value: Some(serde_json::to_string(rollout).unwrap_or_default()),
            principal: principal.to_string(),
            reason: format!("rollout of version {}: {reason}", rollout.canary),
        })
        .await
    }

    /// One pass of the rollout controller over every running rollout this replica runs (or
    /// takes over because its runner went quiet).
    pub async fn advance_rollouts(&self) {
        let running: Vec<(String, Rollout)> = self
            .policies
            .read()
            .iter()
            .filter_map(|(m, p)| {
                let r = p.rollout.as_ref()?;
                (r.state == RolloutState::Running).then(|| (m.clone(), r.clone()))
            })
            .collect();
        for (model, mut rollout) in running {
            let elapsed = Duration::from_millis(now_ms().saturating_sub(rollout.step_started_ms));
            let step = Duration::try_from_secs_f64(rollout.plan.step_seconds)
                .unwrap_or(Duration::from_secs(MAX_STEP_SECONDS as u64));
            if rollout.owner != self.replica {
                if elapsed < step * 3 + Duration::from_secs(30) {
                    continue;
                }
                tracing::warn!(model, owner = %rollout.owner, "taking over a rollout whose runner went quiet");
                rollout.owner = self.replica.clone();
                rollout.step_started_ms = now_ms();
                if let Err(e) = self.store_rollout(&model, &rollout, "", "taken over").await {
                    tracing::error!(model, "cannot take over the rollout: {e}");
                }
                continue;
            }
            if let Err(e) = self.judge(&model, rollout, elapsed >= step).await {
                tracing::error!(model, "rollout step failed: {e}");
            }
        }
    }

    async fn judge(
        &self,
        model: &str,
        mut rollout: Rollout,
        step_over: bool,
    ) -> Result<(), RuntimeError> {
        let base = self.rollout_meters.peek(model, rollout.baseline);
        let canary = self.rollout_meters.peek(model, rollout.canary);
        let agreement = self.shadow_agreement(model, rollout.canary);
        let (b, c) = (
            base.figures(rollout.baseline),
            canary.figures(rollout.canary),
        );
        let plan = &rollout.plan;
        let verdict = if c.requests < plan.min_requests {
            Verdict::Wait
        } else if c.error_rate - b.error_rate > plan.max_error_rate_increase {
            Verdict::Rollback(format!(
                "canary error rate {:.4} exceeds the baseline's {:.4} by more than {}",
                c.error_rate, b.error_rate, plan.max_error_rate_increase
            ))
        } else if let (Some(cp), Some(bp)) = (c.p99_us, b.p99_us)
            && b.requests >= plan.min_requests.min(50)
            && cp / bp > plan.max_p99_ratio
        {
            Verdict::Rollback(format!(
                "canary p99 {cp:.0} us is {:.2}x the baseline's {bp:.0} us (limit {}x)",
                cp / bp,
                plan.max_p99_ratio
            ))
        } else if let (Some(min), Some(seen)) = (plan.min_agreement, agreement)
            && seen < min
        {
            Verdict::Rollback(format!(
                "canary agreed with the baseline on {:.2}% of shadow comparisons (minimum {:.2}%)",
                seen * 100.0,
                min * 100.0
            ))
        } else if step_over {
            Verdict::Advance(format!(
                "step passed: {} canary requests, error rate {:.4} (baseline {:.4})",
                c.requests, c.error_rate, b.error_rate
            ))
        } else {
            Verdict::Wait
        };
        let decision = |action: &str, reason: String, r: &Rollout| Decision {
            time: rfc3339(SystemTime::now()),
            step: r.step,
            weight: r.weight(),
            action: action.into(),
            reason,
            principal: String::new(),
            baseline: Some(b.clone()),
            canary: Some(c.clone()),
            agreement,
        };
        match verdict {
            Verdict::Wait => Ok(()),
            Verdict::Rollback(reason) => {
                tracing::warn!(
                    model,
                    canary = rollout.canary,
                    "rollout rolled back: {reason}"
                );
                rollout.state = RolloutState::RolledBack;
                let d = decision("rollback", reason.clone(), &rollout);
                rollout.decisions.push(d);
                self.store_rollout(model, &rollout, "", &reason).await
            }
            Verdict::Advance(reason) => {
                let d = decision("advance", reason.clone(), &rollout);
                rollout.decisions.push(d);
                self.rollout_meters.take(model, rollout.baseline);
                self.rollout_meters.take(model, rollout.canary);
                if rollout.step + 1 >= rollout.plan.steps.len() {
                    tracing::info!(
                        model,
                        canary = rollout.canary,
                        "rollout complete: promoting"
                    );
                    return self
                        .promote(model, &mut rollout, "", "all steps passed")
                        .await;
                }
                rollout.step += 1;
                rollout.step_started_ms = now_ms();
                tracing::info!(
                    model,
                    canary = rollout.canary,
                    weight = rollout.weight(),
                    "rollout advanced"
                );
                self.store_rollout(model, &rollout, "", &reason).await
            }
        }
    }

    /// Runs the rollout controller and follows other replicas' changes until the runtime goes.
    pub async fn run_background(self: std::sync::Arc<Self>, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error: Option<Instant> = None;
        loop {
            tick.tick().await;
            match self.sync_state().await {
                Ok(_) => last_error = None,
                Err(e) => {
                    // Once a minute at most: an unreachable store must not flood the log.
                    if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        tracing::error!("cannot read the state store: {e}");
                        last_error = Some(Instant::now());
                    }
                    continue;
                }
            }
            self.advance_rollouts().await;
        }
    }
}

/// `GET /v2/models/{m}/rollout`.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutView {
    pub weight: f64,
    #[serde(flatten)]
    pub rollout: Rollout,
    /// The current step's figures so far (on this replica).
    pub current: CurrentFigures,
}

#[derive(Debug, Clone, Serialize)]
pub struct CurrentFigures {
    pub baseline: ArmFigures,
    pub canary: ArmFigures,
    pub agreement: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_comes_from_fine_buckets() {
        let mut m = Meter::default();
        for i in 0..1000 {
            m.latency[bucket(100.0 + i as f64)] += 1;
        }
        let p99 = m.p99().unwrap();
        assert!((p99 / 1090.0 - 1.0).abs() < 0.06, "{p99}");
        assert!(bucket(1e12) < BUCKETS);
    }

    #[test]
    fn a_rollout_splits_baseline_first() {
        let plan: RolloutPlan =
            serde_json::from_str(r#"{"version": "4", "steps": [5, 100]}"#).unwrap();
        let r = Rollout {
            baseline: 3,
            canary: 4,
            plan,
            state: RolloutState::Running,
            step: 0,
            step_started_ms: 0,
            owner: String::new(),
            decisions: vec![],
        };
        let split = r.split().unwrap();
        assert_eq!((split[0].weight, split[1].weight), (95.0, 5.0));
        assert_eq!(split[1].version.as_deref(), Some("4"));
        let done = Rollout {
            state: RolloutState::RolledBack,
            ..r
        };
        assert!(done.split().is_none());
    }
}
