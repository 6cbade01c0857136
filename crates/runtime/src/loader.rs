//! The threads that load models. Each load gets a fresh thread at the lowest CPU priority:
//! - serving threads win the CPU whenever they want it, so loading one model does not move the
//!   latency of the others on a busy machine;
//! - thread-local buffers the backend keeps (parsing, constant folding scratch) die with the
//!   thread, where a pooled thread would keep them resident after the load.

use tokio::sync::oneshot;

/// Runs `load` on a new low-priority thread; the receiver yields its result, or an error when
/// the thread could not start or panicked.
pub fn spawn<T: Send + 'static>(
    model: &str,
    load: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> oneshot::Receiver<Result<T, String>> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("inferd-load-{model}"))
        .spawn(move || {
            lower_priority();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(load))
                .unwrap_or_else(|_| Err("the backend panicked while loading".into()));
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        let (tx, failed) = oneshot::channel();
        let _ = tx.send(Err(format!("cannot start a load thread: {e}")));
        return failed;
    }
    rx
}

/// Nice 19 for the calling thread (Linux applies nice per thread).
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread's own id; failure only leaves the priority.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 19) != 0 {
            tracing::debug!("could not lower the load thread's priority");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}
