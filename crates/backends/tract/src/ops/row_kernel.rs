//! Operators that are plain row-by-row computations over a [batch, features] float input (SVMs)
//! share one tract op: an inference-time expansion that casts to f32 and wires a typed op.

use std::fmt::Debug;
use std::hash::Hash;

use tract_hir::internal::*;
use tract_hir::tract_core::ndarray::{ArrayView2, Ix2};

/// A row computation: what it outputs, and how.
pub(crate) trait RowKernel:
    Debug + Clone + PartialEq + Eq + Hash + Send + Sync + 'static
{
    const NAME: &'static str;
    /// Datum type and row width of each output; `None` is one value per row (shape [batch]).
    fn outputs(&self) -> TVec<(DatumType, Option<usize>)>;
    fn n_features(&self) -> usize;
    /// `x` is [batch, n_features]; returns the outputs, first dimension batch.
    fn run(&self, x: ArrayView2<f32>) -> TractResult<TVec<Tensor>>;
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RowOp<K>(pub K);

impl<K: RowKernel> Expansion for RowOp<K> {
    fn name(&self) -> StaticName {
        K::NAME.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        let kinds = self.0.outputs();
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, kinds.len())?;
        s.equals(&inputs[0].rank, 2)?;
        for (output, (dt, width)) in outputs.iter().zip(kinds) {
            s.equals(&output.datum_type, dt)?;
            s.equals(&output.shape[0], &inputs[0].shape[0])?;
            match width {
                Some(w) => {
                    s.equals(&output.rank, 2)?;
                    s.equals(&output.shape[1], w.to_dim())?;
                }
                None => s.equals(&output.rank, 1)?,
            }
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let x = super::wire_f32(prefix, model, inputs[0])?;
        model.wire_node(prefix, TypedRowOp(self.0.clone()), &[x])
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(self.0.outputs().len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TypedRowOp<K>(K);

impl<K: RowKernel> Op for TypedRowOp<K> {
    fn name(&self) -> StaticName {
        K::NAME.into()
    }

    op_as_typed_op!();
}

impl<K: RowKernel> EvalOp for TypedRowOp<K> {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let x = x
            .to_plain_array_view::<f32>()?
            .into_dimensionality::<Ix2>()?;
        ensure!(
            x.ncols() == self.0.n_features(),
            "{} expects {} features per row, got {}",
            K::NAME,
            self.0.n_features(),
            x.ncols()
        );
        Ok(self
            .0
            .run(x)?
            .into_iter()
            .map(|t| t.into_tvalue())
            .collect())
    }
}

impl<K: RowKernel> TypedOp for TypedRowOp<K> {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = inputs[0].shape[0].clone();
        Ok(self
            .0
            .outputs()
            .into_iter()
            .map(|(dt, width)| match width {
                Some(w) => dt.fact([n.clone(), w.to_dim()]),
                None => dt.fact([n.clone()]),
            })
            .collect())
    }

    as_op!();
}
