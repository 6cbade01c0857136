//! The sequence batcher of a stateful model (Triton's `sequence_batching`): requests name a
//! sequence (`sequence_id`, integer or string) and flag its first and last request
//! (`sequence_start`, `sequence_end`). The requests of one sequence run one at a time, in
//! order; the server fills in the control inputs and feeds each state output back as the
//! sequence's next state input. Requests of different sequences meet in the version's
//! scheduler, which batches them.
//!
//! A sequence holds a slot while it lives: at most `max_batch_size` x `instance_count` at once
//! with the direct strategy, `max_candidate_sequences` with the oldest; a new sequence waits for
//! a free slot. A sequence idle past `max_sequence_idle_us` is released and counted.

mod layout;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use inferd_core::{
    ControlInput, ControlKind, DataType, SequenceBatching, SequenceStrategy, Tensor, TensorData,
    element_count,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use layout::{Drain, Feed, SequenceLayout};

use crate::{Parameter, Parameters, RuntimeError};

/// A sequence's id as the client gave it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SequenceId {
    Number(u64),
    Text(String),
}

impl std::fmt::Display for SequenceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SequenceId::Number(n) => write!(f, "{n}"),
            SequenceId::Text(s) => write!(f, "'{s}'"),
        }
    }
}

/// What a request says of its sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flags {
    pub id: SequenceId,
    pub start: bool,
    pub end: bool,
}

impl Flags {
    /// The request's sequence parameters; a sequence model refuses a request without an id.
    pub fn parse(parameters: &Parameters, model: &str) -> Result<Flags, RuntimeError> {
        let invalid = |m: String| RuntimeError::InvalidInput(m);
        let id = match parameters.get("sequence_id") {
            Some(Parameter::String(s)) if !s.is_empty() => Some(SequenceId::Text(s.clone())),
            Some(Parameter::String(_)) | None => None,
            Some(p) => match p.as_u64() {
                Some(0) => None,
                Some(n) => Some(SequenceId::Number(n)),
                None => {
                    return Err(invalid(
                        "parameter 'sequence_id' must be an unsigned integer or a string".into(),
                    ));
                }
            },
        };
        let Some(id) = id else {
            return Err(invalid(format!(
                "inference request to model '{model}' must specify a non-zero or non-empty \
                 correlation ID (parameter 'sequence_id'): it is a sequence model"
            )));
        };
        let flag = |key: &str| match parameters.get(key) {
            None => Ok(false),
            Some(p) => p
                .as_bool()
                .ok_or_else(|| invalid(format!("parameter '{key}' must be a boolean"))),
        };
        Ok(Flags {
            id,
            start: flag("sequence_start")?,
            end: flag("sequence_end")?,
        })
    }
}

/// The live sequences of one model version.
pub(crate) struct Sequences {
    layout: Arc<SequenceLayout>,
    model: String,
    version: u64,
    idle: Duration,
    table: Mutex<Table>,
    slots: Arc<Semaphore>,
    released_idle: AtomicU64,
}

struct Table {
    live: HashMap<SequenceId, Arc<Sequence>>,
    swept: Instant,
}

struct Sequence {
    /// Held while one of the sequence's requests runs: the next waits its turn, in order.
    carried: tokio::sync::Mutex<Carried>,
    last_used: Mutex<Instant>,
    _slot: OwnedSemaphorePermit,
}

struct Carried {
    /// The state inputs of the next request; `None`: zeros (the sequence's first request).
    states: Vec<Option<Tensor>>,
    /// Ended or released while a request waited for its turn.
    gone: bool,
}

/// The live sequences and those released when idle, for statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SequenceCounts {
    pub active: u64,
    pub released_idle: u64,
}

impl Sequences {
    /// `slots`: how many sequences may live at once.
    pub fn new(layout: Arc<SequenceLayout>, model: &str, version: u64, slots: usize) -> Sequences {
        let idle = Duration::from_micros(layout.config.idle_us());
        Sequences {
            layout,
            model: model.to_string(),
            version,
            idle,
            table: Mutex::new(Table {
                live: HashMap::new(),
                swept: Instant::now(),
            }),
            slots: Arc::new(Semaphore::new(slots.max(1))),
            released_idle: AtomicU64::new(0),
        }
    }

    /// How many sequences may live at once under `config`'s strategy.
    pub fn capacity(config: &SequenceBatching, max_batch_size: u32, instances: u32) -> usize {
        match config.strategy {
            SequenceStrategy::Direct => (max_batch_size.max(1) * instances.max(1)) as usize,
            SequenceStrategy::Oldest => config.oldest.max_candidate_sequences as usize,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn counts(&self) -> SequenceCounts {
        let mut table = self.lock();
        self.sweep(&mut table, Instant::now());
        SequenceCounts {
            active: table.live.len() as u64,
            released_idle: self.released_idle.load(Ordering::Relaxed),
        }
    }

    /// Releases sequences idle past the limit that no request holds or waits for.
    fn sweep(&self, table: &mut Table, now: Instant) {
        table.swept = now;
        let idle = self.idle;
        let mut released = 0;
        table.live.retain(|_, sequence| {
            let last = *sequence.last_used.lock().unwrap_or_else(|e| e.into_inner());
            if now.saturating_duration_since(last) <= idle {
                return true;
            }
            match sequence.carried.try_lock() {
                Ok(mut carried) => {
                    carried.gone = true;
                    released += 1;
                    false
                }
                Err(_) => true,
            }
        });
        if released > 0 {
            self.released_idle.fetch_add(released, Ordering::Relaxed);
            tracing::debug!(model = %self.model, released, "idle sequences released");
        }
    }

    /// Sweeps when a quarter of the idle limit passed since the last sweep.
    fn sweep_if_due(&self, table: &mut Table, now: Instant) {
        if now.saturating_duration_since(table.swept) >= self.idle / 4 {
            self.sweep(table, now);
        }
    }

    /// The sequence a request goes to: a new one for a START (after a free slot), else the
    /// live one.
    async fn sequence(
        &self,
        flags: &Flags,
        deadline: Option<Instant>,
    ) -> Result<Arc<Sequence>, RuntimeError> {
        if !flags.start {
            let mut table = self.lock();
            self.sweep_if_due(&mut table, Instant::now());
            return table.live.get(&flags.id).cloned().ok_or_else(|| {
                RuntimeError::InvalidInput(format!(
                    "inference request for sequence {} to model '{}' must specify the START flag \
                     on the first request of the sequence (it is not live: never started, ended, \
                     or released after {} us idle)",
                    flags.id,
                    self.model,
                    self.idle.as_micros()
                ))
            });
        }
        // A START for a live id starts it over.
        let replaced = self.lock().live.remove(&flags.id);
        if let Some(old) = replaced
            && let Ok(mut carried) = old.carried.try_lock()
        {
            carried.gone = true;
        }
        let slot = self.slot(deadline).await?;
        let sequence = Arc::new(Sequence {
            carried: tokio::sync::Mutex::new(Carried {
                states: vec![None; self.layout.config.states.len()],
                gone: false,
            }),
            last_used: Mutex::new(Instant::now()),
            _slot: slot,
        });
        self.lock()
            .live
            .insert(flags.id.clone(), Arc::clone(&sequence));
        Ok(sequence)
    }

    /// A free slot; waits for one (sweeping idle sequences as they expire) within `deadline`.
    async fn slot(&self, deadline: Option<Instant>) -> Result<OwnedSemaphorePermit, RuntimeError> {
        let waited = Instant::now();
        loop {
            if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
                return Ok(permit);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return Err(RuntimeError::TimedOut {
                    model: self.model.clone(),
                    waited_us: waited.elapsed().as_micros(),
                });
            }
            // At least until a live sequence could turn idle; never past the deadline.
            let mut wait = self.idle / 4 + Duration::from_millis(1);
            if let Some(d) = deadline {
                wait = wait.min(d - now);
            }
            if let Ok(Ok(permit)) =
                tokio::time::timeout(wait, Arc::clone(&self.slots).acquire_owned()).await
            {
                return Ok(permit);
            }
            let mut table = self.lock();
            self.sweep(&mut table, Instant::now());
        }
    }

    /// Runs one request of a sequence: `inputs` are the request's (visible) inputs in model
    /// order; `execute` runs the backend's full inputs and returns its full outputs, with
    /// whatever it reports beside them. Returns the visible outputs in model order.
    pub async fn run<T, F, Fut>(
        &self,
        flags: &Flags,
        inputs: Vec<Tensor>,
        deadline: Option<Instant>,
        execute: F,
    ) -> Result<(Vec<Tensor>, T), RuntimeError>
    where
        F: FnOnce(Vec<Tensor>) -> Fut,
        Fut: Future<Output = Result<(Vec<Tensor>, T), RuntimeError>>,
    {
        let sequence = self.sequence(flags, deadline).await?;
        let mut carried = sequence.carried.lock().await;
        if carried.gone {
            return Err(RuntimeError::InvalidInput(format!(
                "sequence {} of model '{}' ended or was started over while this request waited \
                 for its turn",
                flags.id, self.model
            )));
        }
        let result = match self.inputs(flags, inputs, &carried.states) {
            Ok(full) => execute(full).await,
            Err(e) => Err(e),
        };
        *sequence.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let result = result.and_then(|(outputs, extra)| {
            let (visible, states) = self.outputs(outputs)?;
            carried.states = states.into_iter().map(Some).collect();
            Ok((visible, extra))
        });
        // A failed start leaves no sequence behind: the client starts it again.
        if flags.end || (flags.start && result.is_err()) {
            carried.gone = true;
            let mut table = self.lock();
            if table
                .live
                .get(&flags.id)
                .is_some_and(|s| Arc::ptr_eq(s, &sequence))
            {
                table.live.remove(&flags.id);
            }
        }
        result
    }

    /// The backend's inputs: the request's, the control values and the carried state.
    fn inputs(
        &self,
        flags: &Flags,
        inputs: Vec<Tensor>,
        states: &[Option<Tensor>],
    ) -> Result<Vec<Tensor>, RuntimeError> {
        let layout = &self.layout;
        let mut request: Vec<Option<Tensor>> = inputs.into_iter().map(Some).collect();
        layout
            .inputs
            .iter()
            .map(|feed| match *feed {
                Feed::Request(ix) => request.get_mut(ix).and_then(Option::take).ok_or_else(|| {
                    RuntimeError::InvalidInput(format!(
                        "model '{}' is missing a request input",
                        self.model
                    ))
                }),
                Feed::Control(ix) => {
                    let control = &layout.config.control_inputs[ix];
                    control_tensor(control, flags, layout.control_shape())
                        .map_err(RuntimeError::InvalidInput)
                }
                Feed::State(ix) => match states.get(ix).cloned().flatten() {
                    Some(state) if !flags.start => Ok(state),
                    _ => Tensor::zeros(layout.config.states[ix].datatype, layout.state_shape(ix))
                        .map_err(RuntimeError::InvalidInput),
                },
            })
            .collect()
    }

    /// Splits the backend's outputs into the response's and the states to carry.
    #[allow(clippy::type_complexity)]
    fn outputs(&self, outputs: Vec<Tensor>) -> Result<(Vec<Tensor>, Vec<Tensor>), RuntimeError> {
        let layout = &self.layout;
        let fail = |message: String| RuntimeError::Inference {
            model: self.model.clone(),
            version: self.version,
            message,
        };
        if outputs.len() != layout.outputs.len() {
            return Err(fail(format!(
                "the backend returned {} outputs, the model declares {}",
                outputs.len(),
                layout.outputs.len()
            )));
        }
        let mut visible = Vec::with_capacity(outputs.len());
        let mut states: Vec<Option<Tensor>> = vec![None; layout.config.states.len()];
        for (tensor, drain) in outputs.into_iter().zip(&layout.outputs) {
            match *drain {
                Drain::Response(_) => visible.push(tensor),
                Drain::State(ix) => {
                    let want = layout.state_shape(ix);
                    if tensor.shape() != want {
                        return Err(fail(format!(
                            "state output '{}' has shape {:?}; the state is {want:?}",
                            layout.config.states[ix].output,
                            tensor.shape()
                        )));
                    }
                    // Its own bytes: a slice would keep the whole batch's output alive.
                    let own = Bytes::copy_from_slice(&tensor.contiguous());
                    let owned =
                        Tensor::from_wire(tensor.datatype(), want, vec![own]).map_err(fail)?;
                    states[ix] = Some(owned);
                }
            }
        }
        Ok((visible, states.into_iter().flatten().collect()))
    }
}

/// One control input's tensor for a request of `flags`' sequence.
fn control_tensor(
    control: &ControlInput,
    flags: &Flags,
    shape: Vec<usize>,
) -> Result<Tensor, String> {
    let n = element_count(&shape).unwrap_or(1);
    let flag = |on: bool| {
        let value = control
            .false_true
            .map_or(on as u8 as f64, |ft| ft[on as usize]);
        TensorData::filled(control.datatype, value, n)
            .ok_or_else(|| format!("control input '{}' cannot be BYTES", control.name))
    };
    let data = match control.kind {
        ControlKind::Start => flag(flags.start)?,
        ControlKind::End => flag(flags.end)?,
        // Every request the server sends carries data: it never pads a batch with filler.
        ControlKind::Ready => flag(true)?,
        ControlKind::Corrid => corrid(control, &flags.id, n)?,
    };
    Tensor::new(shape, data)
}

/// The sequence id as the CORRID input's datatype (32-bit types keep the low 32 bits, as
/// Triton does).
fn corrid(control: &ControlInput, id: &SequenceId, n: usize) -> Result<TensorData, String> {
    let number = match id {
        SequenceId::Number(v) => Some(*v),
        SequenceId::Text(_) => None,
    };
    Ok(match (control.datatype, number) {
        (DataType::Bytes, _) => {
            let text = match id {
                SequenceId::Number(v) => v.to_string(),
                SequenceId::Text(s) => s.clone(),
            };
            TensorData::Bytes(vec![text.into_bytes(); n])
        }
        (DataType::U64, Some(v)) => TensorData::U64(vec![v; n]),
        (DataType::I64, Some(v)) => TensorData::I64(vec![v as i64; n]),
        (DataType::U32, Some(v)) => TensorData::U32(vec![v as u32; n]),
        (DataType::I32, Some(v)) => TensorData::I32(vec![v as u32 as i32; n]),
        (datatype, Some(_)) => {
            return Err(format!(
                "control input '{}' (CORRID) cannot be {datatype}",
                control.name
            ));
        }
        (datatype, None) => {
            return Err(format!(
                "sequence id {id} is a string but the model's CORRID input '{}' is {datatype}: \
                 use an integer sequence_id",
                control.name
            ));
        }
    })
}

#[cfg(test)]
mod tests;
