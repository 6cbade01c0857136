//! `FeatureVectorizer` (ai.onnx.ml): concatenates its inputs' features into one float row per
//! sample, each input taking `inputdimensions[i]` columns.

use tract_hir::internal::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct FeatureVectorizer {
    dimensions: Vec<usize>,
}

pub fn build(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let dimensions = node
        .get_attr_vec::<i64>("inputdimensions")?
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| format_err!("negative input dimension {d}")))
        .collect::<TractResult<_>>()?;
    Ok((expand(FeatureVectorizer { dimensions }), vec![]))
}

impl Expansion for FeatureVectorizer {
    fn name(&self) -> StaticName {
        "FeatureVectorizer".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, self.dimensions.len())?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(
            &outputs[0].shape[1],
            self.dimensions.iter().sum::<usize>().to_dim(),
        )?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let mut parts = TVec::new();
        for (ix, (input, width)) in inputs.iter().zip(&self.dimensions).enumerate() {
            let mut x = super::wire_f32(&format!("{prefix}.{ix}"), model, *input)?;
            let fact = model.outlet_fact(x)?.clone();
            if fact.rank() == 1 {
                x = model.wire_node(format!("{prefix}.{ix}.as_column"), AxisOp::Add(1), &[x])?[0];
            }
            let fact = model.outlet_fact(x)?.clone();
            ensure!(
                fact.rank() == 2,
                "FeatureVectorizer input {ix} must be [batch, features]"
            );
            ensure!(
                fact.shape[1] == width.to_dim(),
                "FeatureVectorizer input {ix} has {} features, inputdimensions says {width}",
                fact.shape[1]
            );
            parts.push(x);
        }
        model.wire_node(prefix, tract_core::ops::array::TypedConcat::new(1), &parts)
    }
}
