//! Where each of a sequence model's backend tensors comes from and goes: the request's own
//! inputs and outputs, control inputs, implicit state. Derived once at load from the model's
//! signature and its `[sequence_batching]`.

use inferd_core::{ModelSignature, SequenceBatching, TensorSpec};

/// A backend input of a sequence model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// The request's input at this index of the visible inputs.
    Request(usize),
    /// Control input at this index of `control_inputs`.
    Control(usize),
    /// State at this index of `states`.
    State(usize),
}

/// A backend output of a sequence model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// The response's output at this index of the visible outputs.
    Response(usize),
    State(usize),
}

#[derive(Debug, Clone)]
pub struct SequenceLayout {
    pub config: SequenceBatching,
    /// One per backend input, in signature order.
    pub inputs: Vec<Feed>,
    /// One per backend output, in signature order.
    pub outputs: Vec<Drain>,
    /// Whether the model has a batch dimension (each request then carries one row).
    pub batched: bool,
}

impl SequenceLayout {
    /// The layout and the visible inputs and outputs (the signature without what the server
    /// fills in or keeps), dims as the model declares them (batch dimension included).
    pub fn derive(
        config: &SequenceBatching,
        signature: &ModelSignature,
        batched: bool,
    ) -> Result<(SequenceLayout, ModelSignature), String> {
        let mut visible = ModelSignature::default();
        let mut inputs = Vec::with_capacity(signature.inputs.len());
        for input in &signature.inputs {
            let feed = if let Some(ix) = config
                .control_inputs
                .iter()
                .position(|c| c.name == input.name)
            {
                let control = &config.control_inputs[ix];
                check(input, control.datatype, &[1], batched, "control input")?;
                Feed::Control(ix)
            } else if let Some(ix) = config.states.iter().position(|s| s.input == input.name) {
                let state = &config.states[ix];
                check(input, state.datatype, &state.dims, batched, "state input")?;
                Feed::State(ix)
            } else {
                visible.inputs.push(input.clone());
                Feed::Request(visible.inputs.len() - 1)
            };
            inputs.push(feed);
        }
        let mut outputs = Vec::with_capacity(signature.outputs.len());
        for output in &signature.outputs {
            let drain = match config.states.iter().position(|s| s.output == output.name) {
                Some(ix) => {
                    let state = &config.states[ix];
                    check(output, state.datatype, &state.dims, batched, "state output")?;
                    Drain::State(ix)
                }
                None => {
                    visible.outputs.push(output.clone());
                    Drain::Response(visible.outputs.len() - 1)
                }
            };
            outputs.push(drain);
        }
        let inputs_named = |name: &str| signature.inputs.iter().any(|t| t.name == name);
        for control in &config.control_inputs {
            if !inputs_named(&control.name) {
                return Err(missing("control input", &control.name, &signature.inputs));
            }
        }
        for state in &config.states {
            if !inputs_named(&state.input) {
                return Err(missing("state input", &state.input, &signature.inputs));
            }
            if !signature.outputs.iter().any(|t| t.name == state.output) {
                return Err(missing("state output", &state.output, &signature.outputs));
            }
        }
        let layout = SequenceLayout {
            config: config.clone(),
            inputs,
            outputs,
            batched,
        };
        Ok((layout, visible))
    }

    /// The shape of a control tensor for one request.
    pub fn control_shape(&self) -> Vec<usize> {
        self.with_row(&[1])
    }

    /// The shape of state `ix` for one request.
    pub fn state_shape(&self, ix: usize) -> Vec<usize> {
        let dims: Vec<usize> = self.config.states[ix]
            .dims
            .iter()
            .map(|d| *d as usize)
            .collect();
        self.with_row(&dims)
    }

    fn with_row(&self, dims: &[usize]) -> Vec<usize> {
        let row = self.batched.then_some(1);
        row.into_iter().chain(dims.iter().copied()).collect()
    }
}

/// The model's tensor agrees with what the config says the server puts there.
fn check(
    tensor: &TensorSpec,
    datatype: inferd_core::DataType,
    dims: &[i64],
    batched: bool,
    what: &str,
) -> Result<(), String> {
    if tensor.datatype != datatype {
        return Err(format!(
            "sequence_batching {what} '{}' is {datatype} but the model has {}",
            tensor.name, tensor.datatype
        ));
    }
    let model_dims = if batched {
        tensor.dims.get(1..).unwrap_or_default()
    } else {
        &tensor.dims[..]
    };
    let fits = model_dims.len() == dims.len()
        && model_dims.iter().zip(dims).all(|(m, d)| *m == -1 || m == d);
    if !fits {
        return Err(format!(
            "sequence_batching {what} '{}' has dims {dims:?} but the model has {model_dims:?} \
             (the batch dimension left out)",
            tensor.name
        ));
    }
    Ok(())
}

fn missing(what: &str, name: &str, have: &[TensorSpec]) -> String {
    format!(
        "sequence_batching {what} '{name}' is not in the model, which has: {}",
        have.iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}
