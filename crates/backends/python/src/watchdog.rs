//! Kills a worker whose call outlives its timeout. The blocked read or write on its pipes then
//! fails, the call is answered, and the instance starts a new worker. One thread per model,
//! asleep until the earliest deadline.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Calls {
    /// Call id -> (deadline, worker pid).
    running: HashMap<u64, (Instant, u32)>,
    /// Calls whose worker was killed for running too long.
    fired: Vec<u64>,
    next: u64,
    stop: bool,
}

#[derive(Clone, Default)]
pub struct Watchdog(Arc<(Mutex<Calls>, Condvar)>);

/// A call being watched; [`Armed::disarm`] says whether it timed out.
pub struct Armed {
    watchdog: Watchdog,
    id: u64,
}

impl Watchdog {
    /// Starts the watching thread.
    pub fn start(name: &str) -> Result<Watchdog, String> {
        let watchdog = Watchdog::default();
        let watcher = watchdog.clone();
        std::thread::Builder::new()
            .name(format!("inferd-py-watch-{name}"))
            .spawn(move || watcher.watch())
            .map_err(|e| format!("cannot start the worker watchdog: {e}"))?;
        Ok(watchdog)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.0.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn arm(&self, pid: u32, timeout: Duration) -> Armed {
        let mut calls = self.lock();
        let id = calls.next;
        calls.next += 1;
        calls.running.insert(id, (Instant::now() + timeout, pid));
        drop(calls);
        self.0.1.notify_one();
        Armed {
            watchdog: self.clone(),
            id,
        }
    }

    pub fn stop(&self) {
        self.lock().stop = true;
        self.0.1.notify_one();
    }

    fn watch(&self) {
        let mut calls = self.lock();
        loop {
            if calls.stop {
                return;
            }
            let now = Instant::now();
            let expired: Vec<(u64, u32)> = calls
                .running
                .iter()
                .filter(|(_, (deadline, _))| *deadline <= now)
                .map(|(id, (_, pid))| (*id, *pid))
                .collect();
            for (id, pid) in expired {
                calls.running.remove(&id);
                calls.fired.push(id);
                // SAFETY: a plain syscall. The pid is a child the server has not reaped yet
                // (it reaps only after the call returns), so it cannot have been reused.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
            let next = calls.running.values().map(|(d, _)| *d).min();
            calls = match next {
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    self.0
                        .1
                        .wait_timeout(calls, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.0.1.wait(calls).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

impl Armed {
    /// Stops watching the call; true when its worker was killed for running too long.
    pub fn disarm(self) -> bool {
        let mut calls = self.watchdog.lock();
        calls.running.remove(&self.id);
        let fired = calls.fired.iter().position(|id| *id == self.id);
        fired.map(|i| calls.fired.swap_remove(i)).is_some()
    }
}
