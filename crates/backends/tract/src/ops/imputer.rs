//! `Imputer` (ai.onnx.ml): replaces `replaced_value` (NaN for SimpleImputer) with the imputed
//! value of the element's feature.

use tract_hir::internal::*;
use tract_hir::ops::logic::wire_with_rank_broadcast;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;

#[derive(Debug, Clone, PartialEq)]
enum Imputed {
    Floats { values: Vec<f32>, replaced: f32 },
    Ints { values: Vec<i64>, replaced: i64 },
}

#[derive(Debug, Clone, PartialEq)]
struct Imputer(Imputed);

impl Eq for Imputer {}

impl std::hash::Hash for Imputer {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match &self.0 {
            Imputed::Floats { values, replaced } => {
                values.iter().for_each(|v| v.to_bits().hash(state));
                replaced.to_bits().hash(state);
            }
            Imputed::Ints { values, replaced } => (values, replaced).hash(state),
        }
    }
}

pub fn build(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let floats = node
        .get_attr_opt_vec::<f32>("imputed_value_floats")?
        .filter(|v| !v.is_empty());
    let ints = node
        .get_attr_opt_vec::<i64>("imputed_value_int64s")?
        .filter(|v| !v.is_empty());
    let imputed = match (floats, ints) {
        (Some(values), None) => Imputed::Floats {
            values,
            replaced: node
                .get_attr_opt::<f32>("replaced_value_float")?
                .unwrap_or(0.0),
        },
        (None, Some(values)) => Imputed::Ints {
            values,
            replaced: node
                .get_attr_opt::<i64>("replaced_value_int64")?
                .unwrap_or(0),
        },
        _ => bail!("Imputer needs exactly one of imputed_value_floats and imputed_value_int64s"),
    };
    Ok((expand(Imputer(imputed)), vec![]))
}

impl Expansion for Imputer {
    fn name(&self) -> StaticName {
        "Imputer".into()
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
        let x = inputs[0];
        let dt = model.outlet_fact(x)?.datum_type;
        let (values, mask) = match &self.0 {
            Imputed::Floats { values, replaced } => {
                let values = model.add_const(
                    format!("{prefix}.values"),
                    rctensor1(values)
                        .cast_to_dt(dt)?
                        .into_owned()
                        .into_arc_tensor(),
                )?;
                let mask = if replaced.is_nan() {
                    model.wire_node(
                        format!("{prefix}.is_nan"),
                        tract_core::ops::math::is_nan(),
                        &[x],
                    )?[0]
                } else {
                    let r = model.add_const(
                        format!("{prefix}.replaced"),
                        rctensor0(*replaced)
                            .cast_to_dt(dt)?
                            .into_owned()
                            .into_arc_tensor(),
                    )?;
                    wire_with_rank_broadcast(
                        format!("{prefix}.eq"),
                        model,
                        super::comparison(tract_core::ops::logic::comp_eq()),
                        &[x, r],
                    )?[0]
                };
                (values, mask)
            }
            Imputed::Ints { values, replaced } => {
                let values = model.add_const(
                    format!("{prefix}.values"),
                    rctensor1(values)
                        .cast_to_dt(dt)?
                        .into_owned()
                        .into_arc_tensor(),
                )?;
                let r = model.add_const(
                    format!("{prefix}.replaced"),
                    rctensor0(*replaced)
                        .cast_to_dt(dt)?
                        .into_owned()
                        .into_arc_tensor(),
                )?;
                let mask = wire_with_rank_broadcast(
                    format!("{prefix}.eq"),
                    model,
                    super::comparison(tract_core::ops::logic::comp_eq()),
                    &[x, r],
                )?[0];
                (values, mask)
            }
        };
        wire_with_rank_broadcast(
            format!("{prefix}.select"),
            model,
            tract_core::ops::logic::Iff,
            &[mask, values, x],
        )
    }
}
