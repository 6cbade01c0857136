//! `Binarizer` (ai.onnx.ml): Y = 1 where X > threshold, else 0, in X's type.

use tract_hir::internal::*;
use tract_hir::ops::logic::wire_with_rank_broadcast;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;

#[derive(Debug, Clone, PartialEq)]
struct Binarizer {
    threshold: f32,
}

impl Eq for Binarizer {}

impl std::hash::Hash for Binarizer {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.threshold.to_bits().hash(state)
    }
}

pub fn build(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let threshold = node.get_attr_opt::<f32>("threshold")?.unwrap_or(0.0);
    Ok((expand(Binarizer { threshold }), vec![]))
}

impl Expansion for Binarizer {
    fn name(&self) -> StaticName {
        "Binarizer".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        super::same_shape_rules(s, inputs, outputs, None)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let dt = model.outlet_fact(inputs[0])?.datum_type;
        let x = super::wire_f32(prefix, model, inputs[0])?;
        let threshold =
            model.add_const(format!("{prefix}.threshold"), rctensor0(self.threshold))?;
        let above = wire_with_rank_broadcast(
            format!("{prefix}.gt"),
            model,
            super::comparison(tract_core::ops::logic::comp_gt()),
            &[x, threshold],
        )?[0];
        model.wire_node(
            format!("{prefix}.cast"),
            tract_core::ops::cast::cast(dt),
            &[above],
        )
    }
}
