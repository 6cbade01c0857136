//! One Python worker process: started with the embedded worker script, fed requests over its
//! stdin, answering on its stdout. Killed when dropped.

use std::io::{BufReader, BufWriter};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use inferd_core::Tensor;
use serde::Deserialize;

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
        let hello: Hello = serde_json::from_slice(&hello)
            .map_err(|e| format!("the Python worker said something unexpected: {e}"))?;
        if !hello.ok {
            return Err(format!("the Python model failed to load:\n{}", hello.error));
        }
        Ok((worker, hello.signature))
    }

    pub fn call(&mut self, inputs: &[(&str, &Tensor)]) -> Result<Vec<(String, Tensor)>, CallError> {
        let sent = wire::write_message(&mut self.stdin, &wire::encode(inputs));
        let answer = sent.and_then(|()| wire::read_message(&mut self.stdout));
        let answer = answer.map_err(|_| CallError::Died(self.ended()))?;
        match answer.split_first() {
            Some((0, tensors)) => wire::decode(tensors).map_err(CallError::Model),
            Some((_, error)) => Err(CallError::Model(
                String::from_utf8_lossy(error).into_owned(),
            )),
            None => Err(CallError::Model("the worker sent an empty answer".into())),
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
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
