//! How busy a version's instances were lately: the share of instance time spent executing over
//! the last [`WINDOW`], for autoscalers (`inferd_instance_utilization`). Executions in progress
//! count up to now, so a long one shows as busy before it ends.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(10);
/// Samples are kept at most this often.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

pub struct BusyClock {
    epoch: Instant,
    /// Nanoseconds of finished executions.
    done_ns: AtomicU64,
    /// Executions running now, and the sum of their start times (ns since `epoch`).
    running: AtomicU64,
    started_sum_ns: AtomicU64,
    /// (time, busy time so far), oldest first, spanning a little more than the window.
    samples: Mutex<VecDeque<(u64, u64)>>,
}

impl Default for BusyClock {
    fn default() -> Self {
        BusyClock {
            epoch: Instant::now(),
            done_ns: AtomicU64::new(0),
            running: AtomicU64::new(0),
            started_sum_ns: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::from([(0, 0)])),
        }
    }
}

impl BusyClock {
    fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// An execution began at `at`.
    pub fn start(&self, at: Instant) {
        self.started_sum_ns
            .fetch_add(self.ns(at), Ordering::Relaxed);
        self.running.fetch_add(1, Ordering::Relaxed);
    }

    /// The execution that began at `at` ended after `took`.
    pub fn stop(&self, at: Instant, took: Duration) {
        let began = self.ns(at);
        self.done_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.running.fetch_sub(1, Ordering::Relaxed);
        self.started_sum_ns.fetch_sub(began, Ordering::Relaxed);
    }

    /// Busy instance time up to `now` (ns), running executions included.
    fn busy_ns(&self, now: u64) -> u64 {
        let running = self.running.load(Ordering::Relaxed);
        let started = self.started_sum_ns.load(Ordering::Relaxed);
        let ongoing = (running * now).saturating_sub(started);
        self.done_ns.load(Ordering::Relaxed) + ongoing
    }

    /// Busy share of `instances` over about the last [`WINDOW`], 0 to 1.
    pub fn utilization(&self, instances: usize) -> f64 {
        let now = self.ns(Instant::now());
        let busy = self.busy_ns(now);
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples
            .back()
            .is_none_or(|(t, _)| now.saturating_sub(*t) >= SAMPLE_EVERY.as_nanos() as u64)
        {
            samples.push_back((now, busy));
        }
        // Keep one sample at or before the window's start.
        let start = now.saturating_sub(WINDOW.as_nanos() as u64);
        while samples.len() > 2 && samples.get(1).is_some_and(|(t, _)| *t <= start) {
            samples.pop_front();
        }
        let Some(&(t0, busy0)) = samples.front() else {
            return 0.0;
        };
        let span = now.saturating_sub(t0) as f64 * instances.max(1) as f64;
        if span <= 0.0 {
            return 0.0;
        }
        (busy.saturating_sub(busy0) as f64 / span).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_and_finished_executions_count() {
        let clock = BusyClock::default();
        let began = Instant::now();
        clock.start(began);
        std::thread::sleep(Duration::from_millis(30));
        // One of two instances busy the whole time so far.
        let u = clock.utilization(2);
        assert!((0.4..=0.5).contains(&u), "{u}");
        clock.stop(began, began.elapsed());
        std::thread::sleep(Duration::from_millis(30));
        let u = clock.utilization(1);
        assert!((0.3..=0.7).contains(&u), "{u}");
    }
}
