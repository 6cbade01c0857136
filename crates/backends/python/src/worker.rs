//! One Python worker process: started with the embedded worker script, fed requests over its
//! stdin, answering on its stdout. Killed when dropped.

use std::io::{BufReader, BufWriter};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use std::time::Duration;

use inferd_core::Tensor;
use serde::Deserialize;

use crate::watchdog::Watchdog;
use crate::wire;

const SCRIPT: &str = include_str!("worker.py");

/// The signature a model reports (built-in scikit-learn model, or a `signature()` method).
#[derive(Debug, Clone, Deserialize)]
pub struct Declared {
    pub inputs: Vec<inferd_core::TensorSpec>,
    pub outputs: Vec<inferd_core::TensorSpec>,
}

#[derive(Deserialize)]
struct Hello {
    ok: bool,
    #[serde(default)]
    signature: Option<Declared>,
    #[serde(default)]
    error: String,
}

pub enum CallError {
    /// The model raised; the worker is fine.
    Model(String),
    /// The worker is gone (crashed, killed); the text says how it ended.
    Died(String),
    /// The worker did not answer in time and was killed.
    TimedOut,
    /// A decoupled model's responses could no longer be delivered; the worker was killed to
    /// stop its generator.
    Abandoned(String),
}

pub struct Worker {
    child: Child,
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    /// Starts a worker on `version_dir` and waits until its model is loaded.
    pub fn start(python: &Path, version_dir: &Path) -> Result<(Worker, Option<Declared>), String> {
        let mut child = Command::new(python)
            .arg("-u")
            .arg("-c")
            .arg(SCRIPT)
            .arg(version_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group: a Ctrl-C to the server's group must not kill the workers
            // of a server that is finishing its requests.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start the Python interpreter {}: {e}",
                    python.display()
                )
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err("the Python worker has no pipes".into());
        };
        let mut worker = Worker {
            child,
            stdin: BufWriter::new(stdin),
            stdout: BufReader::new(stdout),
        };
        let hello = match wire::read_message(&mut worker.stdout) {
            Ok(hello) => hello,
            Err(_) => {
                return Err(format!(
                    "the Python worker ({}) exited before loading the model: {} (is numpy installed \
                     for that interpreter? its stderr is in the server log)",
                    python.display(),
                    worker.ended()
                ));
            }
        };
        let hello: Hello = serde_json::from_slice(&hello[..])
            .map_err(|e| format!("the Python worker said something unexpected: {e}"))?;
        if !hello.ok {
            return Err(format!("the Python model failed to load:\n{}", hello.error));
        }
        Ok((worker, hello.signature))
    }

    /// One request; `watchdog` kills the worker when it takes longer than `timeout` for an
    /// answer (each response of a decoupled model has the whole timeout). A model that yields
    /// responses hands each to `partial` and returns `None`; one that returns answers `Some`.
    pub fn call(
        &mut self,
        inputs: &[(&str, &Tensor)],
        watchdog: &Watchdog,
        timeout: Duration,
        partial: &mut dyn FnMut(Vec<(String, Tensor)>) -> Result<(), String>,
    ) -> Result<Option<Vec<(String, Tensor)>>, CallError> {
        let mut sent = wire::write_tensors(&mut self.stdin, inputs);
        loop {
            let armed = watchdog.arm(self.pid(), timeout);
            let answer = std::mem::replace(&mut sent, Ok(()))
                .and_then(|()| wire::read_message(&mut self.stdout));
            let timed_out = armed.disarm();
            let answer = match answer {
                Ok(_) if timed_out => return Err(CallError::TimedOut),
                Ok(answer) => answer,
                Err(_) if timed_out => {
                    self.ended();
                    return Err(CallError::TimedOut);
                }
                Err(_) => return Err(CallError::Died(self.ended())),
            };
            let decode =
                |answer: &bytes::Bytes| wire::decode(&answer.slice(1..)).map_err(CallError::Model);
            match answer.first() {
                Some(0) => return decode(&answer).map(Some),
                Some(2) => {
                    if let Err(why) = partial(decode(&answer)?) {
                        // The rest of the generator's answers have nowhere to go: stop it.
                        self.ended();
                        return Err(CallError::Abandoned(why));
                    }
                }
                Some(3) => return Ok(None),
                Some(_) => {
                    return Err(CallError::Model(
                        String::from_utf8_lossy(&answer[1..]).into_owned(),
                    ));
                }
                None => return Err(CallError::Model("the worker sent an empty answer".into())),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended (waits for it: its pipes are closed already).
    fn ended(&mut self) -> String {
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => status.to_string(),
            Err(e) => format!("unknown ({e})"),
        }
    }
}

impl Drop for Worker {
    /// Kills the process; it is reaped on a thread of its own, so that dropping a worker (a
    /// model unloaded from an async task) never waits for a process to exit.
    fn drop(&mut self) {
        let _ = self.child.kill();
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id();
        let reaped = std::thread::Builder::new()
            .name("inferd-py-reap".into())
            .spawn(move || {
                // SAFETY: waits for our own child, whose handle is gone with this worker.
                unsafe {
                    libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
                }
            });
        if reaped.is_err() {
            tracing::warn!(
                pid,
                "cannot start a thread to reap a Python worker; it stays a zombie"
            );
        }
    }
}
