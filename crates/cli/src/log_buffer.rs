//! Log lines on stderr, written in batches: lines collect in a buffer that a thread writes out
//! every few milliseconds (sooner when it fills), so thousands of access lines a second cost a
//! few writes instead of one system call each. Warnings and errors are written at once, and
//! everything is written before the process exits. Order is kept: buffers are written in the
//! order they were taken.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Written at once beyond this many buffered bytes.
const FLUSH_AT: usize = 64 << 10;

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    stop: bool,
}

pub struct LogBuffer {
    state: Mutex<State>,
    tick: Condvar,
    /// Held while writing to stderr, taken before the buffer is released: writes keep order.
    out: Mutex<()>,
    /// 0: every line is written at once.
    every: Duration,
}

impl LogBuffer {
    /// A buffer written every `every` (0: unbuffered), with its writing thread started.
    pub fn start(every: Duration) -> Result<Arc<LogBuffer>, String> {
        let buffer = Arc::new(LogBuffer {
            state: Mutex::default(),
            tick: Condvar::new(),
            out: Mutex::new(()),
            every,
        });
        if !every.is_zero() {
            let writer = Arc::clone(&buffer);
            std::thread::Builder::new()
                .name("inferd-log".into())
                .spawn(move || writer.run())
                .map_err(|e| format!("cannot start the log writer: {e}"))?;
        }
        Ok(buffer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut state = self.lock();
        loop {
            state = self
                .tick
                .wait_timeout(state, self.every)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            let stop = state.stop;
            state = self.write_out(state);
            if stop {
                return;
            }
        }
    }

    /// Writes what is buffered; returns the (re-taken) lock.
    fn write_out<'a>(
        &'a self,
        mut state: std::sync::MutexGuard<'a, State>,
    ) -> std::sync::MutexGuard<'a, State> {
        if state.lines.is_empty() {
            return state;
        }
        let lines = std::mem::take(&mut state.lines);
        let out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        drop(state);
        // Nowhere to report a failing stderr.
        let _ = std::io::stderr().lock().write_all(&lines);
        drop(out);
        self.lock()
    }

    fn push(&self, line: &[u8], urgent: bool) {
        let mut state = self.lock();
        state.lines.extend_from_slice(line);
        if urgent || self.every.is_zero() || state.lines.len() >= FLUSH_AT {
            drop(self.write_out(state));
        }
    }

    /// Writes everything buffered and stops the writing thread.
    pub fn flush(&self) {
        let mut state = self.lock();
        state.stop = true;
        drop(self.write_out(state));
        self.tick.notify_one();
    }
}

/// One event's writer: its formatted line goes to the buffer.
pub struct LineWriter {
    buffer: Arc<LogBuffer>,
    urgent: bool,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.push(bytes, self.urgent);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The fmt layer's writer factory over a shared buffer.
#[derive(Clone)]
pub struct Buffered(pub Arc<LogBuffer>);

impl<'a> MakeWriter<'a> for Buffered {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            buffer: Arc::clone(&self.0),
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter {
            buffer: Arc::clone(&self.0),
            urgent: *meta.level() <= Level::WARN,
        }
    }
}
