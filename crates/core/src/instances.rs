//! Per-instance state of a backend (a session, a worker process) that runs one call at a time.

use std::sync::{Mutex, MutexGuard};

/// One value per model instance. A call takes a free one, or waits for the first when all are
/// busy (the scheduler never runs more calls than there are instances, so that is rare).
pub struct Instances<T>(Vec<Mutex<T>>);

impl<T> Instances<T> {
    /// `None` for an empty list: a model has at least one instance.
    pub fn new(values: Vec<T>) -> Option<Instances<T>> {
        (!values.is_empty()).then(|| Instances(values.into_iter().map(Mutex::new).collect()))
    }

    pub fn take(&self) -> MutexGuard<'_, T> {
        for instance in &self.0 {
            if let Ok(guard) = instance.try_lock() {
                return guard;
            }
        }
        // A poisoned lock only means a panic in an earlier call, which the scheduler reported.
        self.0[0].lock().unwrap_or_else(|e| e.into_inner())
    }
}
