//! One scheduler per model version: a bounded priority queue, `instance_count` worker threads
//! that run the backend off the async runtime, and a dynamic batcher that merges queued requests
//! of the same non-batch shapes along the first dimension.
//!
//! A request that finds an instance idle and nothing queued runs at once on the caller's
//! thread, when the model is quick (its executions lately took less than [`INLINE_LIMIT`]) and
//! its backend allows it: handing it to an instance thread and its answer back costs two thread
//! wake-ups, more than a small model's whole execution. Everything else queues.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use inferd_core::{LoadedModel, Tensor};
use tokio::sync::oneshot;
use tracing::Span;

use crate::stats::{ExecutionTimes, ModelStats};

/// Executions shorter than this may run on the requesting thread (an async worker), which
/// they hold meanwhile; a slower model always runs on its instance threads.
pub const INLINE_LIMIT: Duration = Duration::from_micros(200);

/// How a model version's requests are queued and batched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Quick requests may run on the caller's thread (when the backend allows it too).
    pub inline: bool,
    /// The instance threads run at idle priority (shadow copies): any other thread wins the CPU.
    pub background: bool,
    pub batching: bool,
    pub max_batch_size: usize,
    pub max_queue_delay: Duration,
    pub preferred_batch_sizes: Vec<usize>,
    /// 0: unbounded.
    pub max_queue_size: usize,
    pub instances: usize,
}

/// Why a queued request got no outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    Full(usize),
    TimedOut(Duration),
    Failed(String),
    Stopped,
}

/// Outputs of one request, with the durations of the execution that produced them and when it
/// began and ended (the caller adds its own waits on either side).
pub type Answer = Result<(Vec<Tensor>, Executed), QueueError>;

#[derive(Debug, Clone, Copy)]
pub struct Executed {
    pub times: ExecutionTimes,
    pub began: Instant,
    pub ended: Instant,
}

type Reply = oneshot::Sender<Answer>;

/// Where a decoupled request's responses go as the backend makes them; its [`Answer`] then
/// only ends it (no outputs).
pub type Partial = tokio::sync::mpsc::Sender<Vec<Tensor>>;

/// A submitted request: answered already (it ran on the caller's thread), or waiting.
pub enum Submitted {
    Done(Answer),
    Queued(oneshot::Receiver<Answer>),
}

impl Submitted {
    pub async fn answer(self) -> Answer {
        match self {
            Submitted::Done(answer) => answer,
            Submitted::Queued(rx) => rx.await.unwrap_or(Err(QueueError::Stopped)),
        }
    }
}

struct Pending {
    inputs: Vec<Tensor>,
    rows: usize,
    /// Non-batch dimensions of every input: requests batch together only when these agree.
    shape_key: Vec<Vec<usize>>,
    deadline: Option<Instant>,
    enqueued: Instant,
    reply: Reply,
    /// The request's trace span, and its queue span (ended when execution starts).
    trace: Option<(Span, Span)>,
    partial: Option<Partial>,
}

struct State {
    /// Ordered by (priority level, arrival): the first entry is the most urgent, oldest request.
    queue: BTreeMap<(u32, u64), Pending>,
    next_seq: u64,
    busy: usize,
    stopped: bool,
    /// Rows per execution lately (moving average): the load the batcher expects.
    typical_rows: f64,
    /// Time per execution lately (moving average); `None` until one ran.
    typical_execution: Option<Duration>,
}

impl Default for State {
    fn default() -> Self {
        State {
            queue: BTreeMap::new(),
            next_seq: 0,
            busy: 0,
            stopped: false,
            typical_rows: 1.0,
            typical_execution: None,
        }
    }
}

impl State {
    fn executed(&mut self, took: Duration) {
        self.busy -= 1;
        self.typical_execution = Some(match self.typical_execution {
            Some(t) => (t * 4 + took) / 5,
            None => took,
        });
    }
}

/// Each request's inputs (outer: requests) in, the batch's inputs out.
type Merge = fn(Vec<Vec<Tensor>>) -> Result<Vec<Tensor>, String>;
/// The batch's outputs and each request's rows in, each request's outputs out.
type Split = fn(Vec<Tensor>, &[usize]) -> Result<Vec<Vec<Tensor>>, String>;

/// How a batch's inputs are merged and its outputs split: the real functions, replaced in
/// tests to inject failures.
#[derive(Clone, Copy)]
pub(crate) struct BatchOps {
    pub merge: Merge,
    pub split: Split,
}

impl Default for BatchOps {
    fn default() -> Self {
        BatchOps { merge, split }
    }
}

struct Shared {
    model: Arc<dyn LoadedModel>,
    policy: Policy,
    state: Mutex<State>,
    work: Condvar,
    stats: Arc<ModelStats>,
    ops: BatchOps,
    inline: bool,
    clock: utilization::BusyClock,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a thread panicked outside the model call; the queue is
        // intact.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Scheduler {
    shared: Arc<Shared>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

/// A request each instance runs `count` times before the scheduler takes traffic.
#[derive(Debug, Clone)]
pub struct WarmupRun {
    pub inputs: Vec<Tensor>,
    pub count: u32,
}

impl Scheduler {
    /// Starts one worker thread per instance; each runs the warmup requests first. Returns once
    /// every instance is warm, or the first warmup failure (the workers are then stopped).
    pub(crate) fn start(
        name: &str,
        model: Arc<dyn LoadedModel>,
        policy: Policy,
        warmup: &[WarmupRun],
        stats: Arc<ModelStats>,
        ops: BatchOps,
    ) -> Result<Scheduler, String> {
        let instances = policy.instances.max(1);
        let inline = policy.inline && model.may_run_inline();
        let background = policy.background;
        let shared = Arc::new(Shared {
            model,
            policy,
            state: Mutex::default(),
            work: Condvar::new(),
            stats,
            ops,
            inline,
            clock: utilization::BusyClock::default(),
        });
        // Built before any thread starts, so an early return stops the ones already running.
        let mut scheduler = Scheduler {
            shared,
            workers: Vec::with_capacity(instances),
        };
        let (warm_tx, warm_rx) = std::sync::mpsc::channel();
        for i in 0..instances {
            let shared = Arc::clone(&scheduler.shared);
            let (warmup, warm_tx) = (warmup.to_vec(), warm_tx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("inferd-{name}-{i}"))
                .spawn(move || {
                    if background {
                        crate::loader::lower_priority();
                    }
                    let warm = run_warmup(&*shared.model, &warmup)
                        .map_err(|e| format!("warmup failed on instance {i}: {e}"));
                    let failed = warm.is_err();
                    let _ = warm_tx.send(warm);
                    if !failed {
                        worker(&shared);
                    }
                })
                .map_err(|e| format!("cannot start the model's instance threads: {e}"))?;
            scheduler.workers.push(handle);
        }
        drop(warm_tx);
        for warm in warm_rx.iter().take(instances) {
            warm?;
        }
        Ok(scheduler)
    }

    /// Runs the request now on this thread when an instance is idle, nothing is queued and the
    /// model is quick; queues it otherwise. Dropping a queued answer's receiver (a client that
    /// went away) removes the request before it runs.
    pub fn submit(
        &self,
        inputs: Vec<Tensor>,
        priority: u32,
        deadline: Option<Instant>,
        trace: Option<&Span>,
        partial: Option<Partial>,
    ) -> Result<Submitted, QueueError> {
        let shared = &*self.shared;
        let rows = if shared.policy.max_batch_size > 0 {
            inputs
                .first()
                .and_then(|t| t.shape().first().copied())
                .unwrap_or(1)
        } else {
            1
        };
        let mut state = shared.lock();
        if state.stopped {
            return Err(QueueError::Stopped);
        }
        // Quick, and requests come one at a time: under concurrent load a lone execution on
        // this thread would take the instance from the batch forming behind it.
        let quick = state.typical_execution.is_some_and(|t| t < INLINE_LIMIT);
        let alone = state.typical_rows < 1.5 && state.queue.is_empty();
        // A decoupled request sends its responses from an instance thread (it may block there).
        let streams = partial.is_some();
        if shared.inline && quick && alone && !streams && state.busy < shared.policy.instances {
            state.busy += 1;
            state.typical_rows = 0.8 * state.typical_rows + 0.2 * rows as f64;
            drop(state);
            return Ok(Submitted::Done(run_inline(shared, inputs, rows, trace)));
        }
        let limit = shared.policy.max_queue_size;
        if limit > 0 && state.queue.len() >= limit {
            return Err(QueueError::Full(limit));
        }
        let shape_key = inputs
            .iter()
            .map(|t| t.shape().get(1..).unwrap_or_default().to_vec())
            .collect();
        let (reply, receiver) = oneshot::channel();
        let seq = state.next_seq;
        state.next_seq += 1;
        let pending = Pending {
            inputs,
            rows,
            shape_key,
            deadline,
            enqueued: Instant::now(),
            reply,
            trace: trace.map(|t| (t.clone(), stage(t, "queue"))),
            partial,
        };
        state.queue.insert((priority, seq), pending);
        drop(state);
        shared.work.notify_one();
        Ok(Submitted::Queued(receiver))
    }

    /// Requests waiting in the queue now.
    pub fn pending(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Busy share of the instances over the last few seconds, 0 to 1.
    pub fn utilization(&self) -> f64 {
        self.shared
            .clock
            .utilization(self.shared.policy.instances.max(1))
    }
}

/// One request on the caller's thread, holding an instance (already counted busy).
fn run_inline(shared: &Shared, inputs: Vec<Tensor>, rows: usize, trace: Option<&Span>) -> Answer {
    let busy = Busy::new(shared);
    let began = Instant::now();
    let traces: Vec<Span> = trace.into_iter().cloned().collect();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        run(shared, vec![inputs], &[rows], &traces, None)
    }));
    let answer = match outcome {
        Ok((Ok(mut per_request), times)) => {
            shared.stats.execution(rows, &times);
            let outputs = per_request.pop().unwrap_or_default();
            Ok((
                outputs,
                Executed {
                    times,
                    began,
                    ended: Instant::now(),
                },
            ))
        }
        Ok((Err(message), _)) => Err(QueueError::Failed(message)),
        Err(_) => Err(QueueError::Failed(crashed())),
    };
    drop(busy);
    answer
}

/// Marks an instance idle again when dropped, even when its execution panicked, and wakes a
/// worker: requests may have queued meanwhile.
struct Busy<'a> {
    shared: &'a Shared,
    started: Instant,
}

impl<'a> Busy<'a> {
    fn new(shared: &'a Shared) -> Busy<'a> {
        let started = Instant::now();
        shared.clock.start(started);
        Busy { shared, started }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        self.shared.clock.stop(self.started, took);
        let mut state = self.shared.lock();
        state.executed(took);
        let queued = !state.queue.is_empty();
        drop(state);
        if queued {
            self.shared.work.notify_one();
        }
    }
}

impl Drop for Scheduler {
    /// Stops the workers and, when they are idle, waits for them, so the model's memory is
    /// freed when this returns. The queue is empty by then: every queued request holds the
    /// scheduler's owner alive.
    fn drop(&mut self) {
        let busy = {
            let mut state = self.shared.lock();
            state.stopped = true;
            state.busy
        };
        self.shared.work.notify_all();
        let workers = std::mem::take(&mut self.workers);
        if busy > 0 {
            // A batch whose callers all left is still running: join elsewhere rather than
            // block this thread (often an async worker) for a whole inference.
            // (If no thread can start, the handles drop and the workers finish detached.)
            let _ = std::thread::Builder::new()
                .name("inferd-reaper".into())
                .spawn(move || {
                    // The served model asked for a trim when it was dropped; one batch
                    // outliving that trim leaves its memory to the next.
                    workers.into_iter().for_each(|h| {
                        let _ = h.join();
                    });
                });
            return;
        }
        let me = std::thread::current().id();
        for handle in workers {
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}

fn run_warmup(model: &dyn LoadedModel, runs: &[WarmupRun]) -> Result<(), String> {
    for run in runs {
        for _ in 0..run.count {
            std::panic::catch_unwind(AssertUnwindSafe(|| model.infer(run.inputs.clone())))
                .map_err(|_| "the model crashed (the backend panicked)".to_string())?
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Drops requests whose client left and answers those past their deadline.
fn prune(state: &mut State, now: Instant) {
    let dead: Vec<(u32, u64)> = state
        .queue
        .iter()
        .filter(|(_, p)| p.reply.is_closed() || p.deadline.is_some_and(|d| d <= now))
        .map(|(k, _)| *k)
        .collect();
    for key in dead {
        if let Some(p) = state.queue.remove(&key)
            && !p.reply.is_closed()
        {
            let _ = p.reply.send(Err(QueueError::TimedOut(now - p.enqueued)));
        }
    }
}

/// Keys of the next batch: the most urgent request, plus same-shaped ones in queue order up to
/// max_batch_size rows (stopping early at a preferred size). Returns the keys and their rows.
fn select(state: &State, policy: &Policy) -> (Vec<(u32, u64)>, usize) {
    let Some((first_key, first)) = state.queue.iter().next() else {
        return (Vec::new(), 0);
    };
    let (mut keys, mut rows) = (vec![*first_key], first.rows);
    if !policy.batching || policy.max_batch_size == 0 || first.partial.is_some() {
        return (keys, rows);
    }
    for (key, p) in state.queue.iter().skip(1) {
        if rows >= policy.max_batch_size || policy.preferred_batch_sizes.contains(&rows) {
            break;
        }
        if p.shape_key == first.shape_key
            && p.partial.is_none()
            && rows + p.rows <= policy.max_batch_size
        {
            keys.push(*key);
            rows += p.rows;
        }
    }
    (keys, rows)
}

fn worker(shared: &Shared) {
    let policy = &shared.policy;
    loop {
        let batch: Vec<Pending> = {
            let mut state = shared.lock();
            loop {
                if state.stopped {
                    return;
                }
                prune(&mut state, Instant::now());
                let (keys, rows) = select(&state, policy);
                let Some(first) = keys.first().and_then(|k| state.queue.get(k)) else {
                    state = shared.work.wait(state).unwrap_or_else(|e| e.into_inner());
                    continue;
                };
                // Wait for more, within the oldest request's delay, only when more are coming:
                // another instance is busy, or recent batches were bigger than what is queued
                // (clients of the last batch are sending their next requests) and an execution
                // takes longer than the wait (for a model faster than the delay, waiting costs
                // more than running twice). A lone client is answered at once.
                let full =
                    rows >= policy.max_batch_size || policy.preferred_batch_sizes.contains(&rows);
                let ready_at = first.enqueued + policy.max_queue_delay;
                let now = Instant::now();
                let slow = state
                    .typical_execution
                    .is_some_and(|t| t > policy.max_queue_delay);
                let coming = state.busy > 0 || ((rows as f64) < state.typical_rows - 0.5 && slow);
                if policy.batching && !full && coming && ready_at > now {
                    let wait = first.deadline.map_or(ready_at, |d| d.min(ready_at)) - now;
                    state = shared
                        .work
                        .wait_timeout(state, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    continue;
                }
                state.busy += 1;
                state.typical_rows = 0.8 * state.typical_rows + 0.2 * rows as f64;
                break keys.iter().filter_map(|k| state.queue.remove(k)).collect();
            }
        };
        let busy = Busy::new(shared);
        let started = Instant::now();
        execute(shared, batch);
        drop(busy);
        if policy.background {
            // At most a quarter of a core: idle priority alone still lets a heavy shadow evict
            // the primary's caches and slow its tail latency.
            std::thread::sleep(started.elapsed() * BACKGROUND_PAUSE);
        }
    }
}

/// A background (shadow) instance pauses this many times its execution after each one.
const BACKGROUND_PAUSE: u32 = 3;

/// Runs one batch and answers each of its requests. A panic anywhere in merging, the backend
/// or splitting fails this batch's requests only.
fn execute(shared: &Shared, batch: Vec<Pending>) {
    let started = Instant::now();
    let rows: Vec<usize> = batch.iter().map(|p| p.rows).collect();
    let total_rows = rows.iter().sum();
    tracing::trace!(requests = batch.len(), rows = total_rows, "executing batch");
    let mut waits = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    let mut inputs = Vec::with_capacity(batch.len());
    let mut traces = Vec::new();
    // Alone in its batch (it never merges), a decoupled request streams.
    let mut partial = None;
    for p in batch {
        partial = partial.or(p.partial);
        waits.push(started.saturating_duration_since(p.enqueued));
        replies.push(p.reply);
        inputs.push(p.inputs);
        // Dropping the queue span ends it: the request leaves the queue now.
        traces.extend(p.trace.map(|(trace, _queue)| trace));
    }
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        run(shared, inputs, &rows, &traces, partial)
    }));
    match outcome {
        Ok((Ok(per_request), times)) => {
            // Counted before anyone is answered, so a client reading statistics right after
            // its response sees its execution. Failed executions are not counted (as Triton).
            shared.stats.execution(total_rows, &times);
            let ended = Instant::now();
            for ((reply, outputs), queue) in replies.into_iter().zip(per_request).zip(waits) {
                let executed = Executed {
                    times: ExecutionTimes { queue, ..times },
                    began: started,
                    ended,
                };
                let _ = reply.send(Ok((outputs, executed)));
            }
        }
        Ok((Err(message), _)) => {
            for reply in replies {
                let _ = reply.send(Err(QueueError::Failed(message.clone())));
            }
        }
        Err(_) => {
            for reply in replies {
                let _ = reply.send(Err(QueueError::Failed(crashed())));
            }
        }
    }
}

fn crashed() -> String {
    "the batch crashed (a panic while merging, running or splitting it); the instance goes on \
     serving"
        .into()
}

/// Runs one execution and splits its outputs back per request; times the three phases.
fn run(
    shared: &Shared,
    mut inputs: Vec<Vec<Tensor>>,
    rows: &[usize],
    traces: &[Span],
    partial: Option<Partial>,
) -> (Result<Vec<Vec<Tensor>>, String>, ExecutionTimes) {
    let total_rows: usize = rows.iter().sum();
    // Every traced request of the batch gets the batch's spans.
    let spans = |name| -> Vec<Span> {
        traces
            .iter()
            .map(|t| {
                let span = stage(t, name);
                span.record("batch_size", total_rows as i64);
                span
            })
            .collect()
    };
    let mut times = ExecutionTimes::default();
    let batch = spans("batch");
    let started = Instant::now();
    let merged = if inputs.len() == 1 {
        Ok(inputs.pop().unwrap_or_default())
    } else {
        (shared.ops.merge)(inputs)
    };
    times.compute_input = started.elapsed();
    drop(batch);
    let merged = match merged {
        Ok(merged) => merged,
        Err(e) => return (Err(e), times),
    };
    let backend = spans("backend");
    let started = Instant::now();
    let outputs = match partial {
        Some(tx) => {
            let mut emit = |outputs| {
                tx.blocking_send(outputs)
                    .map_err(|_| "the caller stopped listening to the responses".to_string())
            };
            shared
                .model
                .infer_stream(merged, &mut emit)
                .map(|()| Vec::new())
        }
        None => shared.model.infer(merged),
    };
    times.compute_infer = started.elapsed();
    drop(backend);
    let outputs = match outputs {
        Ok(outputs) => outputs,
        Err(e) => return (Err(e.to_string()), times),
    };
    let started = Instant::now();
    let split = if rows.len() == 1 {
        Ok(vec![outputs])
    } else {
        (shared.ops.split)(outputs, rows)
    };
    times.compute_output = started.elapsed();
    (split, times)
}

/// A trace span for one stage of a traced request (OTLP span name `name`).
pub(crate) fn stage(parent: &Span, name: &'static str) -> Span {
    tracing::trace_span!(
        target: inferd_core::TRACE_TARGET,
        parent: parent,
        "stage",
        otel.name = name,
        batch_size = tracing::field::Empty
    )
}

/// Concatenates the requests' inputs along the batch dimension, input by input (the tensors'
/// chunks are appended: nothing is copied).
fn merge(inputs: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>, String> {
    let n_inputs = inputs.first().map_or(0, Vec::len);
    let mut columns: Vec<Vec<Tensor>> = (0..n_inputs)
        .map(|_| Vec::with_capacity(inputs.len()))
        .collect();
    for request in inputs {
        for (column, tensor) in columns.iter_mut().zip(request) {
            column.push(tensor);
        }
    }
    columns.into_iter().map(Tensor::concat_rows).collect()
}

/// Splits each output back into one piece per request, by their rows (slices, no copies).
fn split(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>, String> {
    let mut per_request: Vec<Vec<Tensor>> = rows
        .iter()
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for output in outputs {
        let pieces = output
            .split_rows(rows)
            .map_err(|e| format!("cannot split a batched output back to its requests: {e}"))?;
        for (request, piece) in per_request.iter_mut().zip(pieces) {
            request.push(piece);
        }
    }
    Ok(per_request)
}

#[cfg(test)]
mod tests;
mod utilization;
