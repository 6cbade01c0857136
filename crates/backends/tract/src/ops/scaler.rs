//! `Scaler` (ai.onnx.ml): Y = (X - offset) * scale, per feature; StandardScaler, MinMaxScaler,
//! MaxAbsScaler and RobustScaler export to it.

use tract_hir::internal::*;
use tract_hir::ops::logic::wire_with_rank_broadcast;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;

use super::{Floats, feature_const, wire_f32};

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Scaler {
    offset: Floats,
    scale: Floats,
}

pub fn build(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let offset = node.get_attr_opt_vec::<f32>("offset")?.unwrap_or_default();
    let scale = node.get_attr_opt_vec::<f32>("scale")?.unwrap_or_default();
    Ok((
        expand(Scaler {
            offset: Floats(offset),
            scale: Floats(scale),
        }),
        vec![],
    ))
}

impl Expansion for Scaler {
    fn name(&self) -> StaticName {
        "Scaler".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        super::same_shape_rules(s, inputs, outputs, Some(DatumType::F32))
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        use tract_core::ops::math::{mul, sub};
        let mut x = wire_f32(prefix, model, inputs[0])?;
        if !self.offset.0.is_empty() {
            let offset = feature_const(prefix, "offset", model, &self.offset.0)?;
            x = wire_with_rank_broadcast(format!("{prefix}.sub"), model, sub(), &[x, offset])?[0];
        }
        if !self.scale.0.is_empty() {
            let scale = feature_const(prefix, "scale", model, &self.scale.0)?;
            x = wire_with_rank_broadcast(format!("{prefix}.mul"), model, mul(), &[x, scale])?[0];
        }
        Ok(tvec!(x))
    }
}
