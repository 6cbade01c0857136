//! The threads that load models. Each load gets a fresh thread at idle CPU priority:
//! - serving threads win the CPU whenever they want it, so loading one model does not move the
//!   latency of the others on a busy machine;
//! - thread-local buffers the backend keeps (parsing, constant folding scratch) die with the
//!   thread, where a pooled thread would keep them resident after the load.
//!
//! Threads inherit the scheduling class of their creator, so instance threads must not be
//! started from here.

use tokio::sync::oneshot;

use crate::LoadFault;

/// Why a load failed, and whose fault it was.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub reason: String,
    pub fault: LoadFault,
}

impl LoadError {
    pub fn server(reason: impl Into<String>) -> LoadError {
        LoadError {
            reason: reason.into(),
            fault: LoadFault::Server,
        }
    }
}

/// What the model's files or config get wrong.
impl From<String> for LoadError {
    fn from(reason: String) -> LoadError {
        LoadError {
            reason,
            fault: LoadFault::Model,
        }
    }
}

/// Runs `load` on a new low-priority thread; the receiver yields its result, or an error when
/// the thread could not start or panicked.
pub fn spawn<T: Send + 'static>(
    model: &str,
    load: impl FnOnce() -> Result<T, LoadError> + Send + 'static,
) -> oneshot::Receiver<Result<T, LoadError>> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("inferd-load-{model}"))
        .spawn(move || {
            lower_priority();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(load))
                .unwrap_or_else(|_| Err(LoadError::server("the backend panicked while loading")));
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        let (tx, failed) = oneshot::channel();
        let _ = tx.send(Err(LoadError::server(format!(
            "cannot start a load thread: {e}"
        ))));
        return failed;
    }
    rx
}

/// SCHED_IDLE for the calling thread: it runs only on CPU time no other thread wants, and any
/// waking serving thread preempts it at once (nice 19 alone still let a back-to-back load
/// loop triple another model's p99 on 2 cores).
#[cfg(target_os = "linux")]
pub(crate) fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread (pid 0 = this thread for sched_setscheduler
    // on Linux); failure only leaves the priority as it was.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 19);
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_priority() {}
