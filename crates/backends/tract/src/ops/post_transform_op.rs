//! Applies an ONNX-ML post-transform along the last axis. Tree classifiers asking for PROBIT or
//! SOFTMAX_ZERO (which tract's classifier rejects) are rewritten before parsing to produce raw
//! scores followed by this op; labels still come from the raw scores, as in onnxruntime.

use tract_hir::internal::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{self, NodeProto};

use super::post_transform::PostTransform;

/// Op type of the inserted node, in a domain of our own so it cannot clash with a model's.
pub const OP_TYPE: &str = "InferdPostTransform";
const DOMAIN: &str = "ai.inferd";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PostTransformOp(pub PostTransform);

pub fn build(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let transform = PostTransform::parse(node.get_attr::<&str>("post_transform")?)?;
    Ok((expand(PostTransformOp(transform)), vec![]))
}

/// Rewrites tree classifiers whose post-transform tract lacks; returns how many.
pub fn split_unsupported(proto: &mut pb::ModelProto) -> usize {
    let Some(graph) = proto.graph.as_mut() else {
        return 0;
    };
    let mut inserted = Vec::new();
    for node in graph
        .node
        .iter_mut()
        .filter(|n| n.op_type == "TreeEnsembleClassifier")
    {
        let Some(attr) = node
            .attribute
            .iter_mut()
            .find(|a| a.name == "post_transform")
        else {
            continue;
        };
        let transform = String::from_utf8_lossy(&attr.s).into_owned();
        if !matches!(transform.as_str(), "PROBIT" | "SOFTMAX_ZERO") || node.output.len() < 2 {
            continue;
        }
        attr.s = b"NONE".to_vec();
        let scores = node.output[1].clone();
        let raw = format!("{scores}__raw_scores");
        node.output[1] = raw.clone();
        inserted.push(NodeProto {
            name: format!("{scores}__{}", transform.to_lowercase()),
            op_type: OP_TYPE.into(),
            domain: DOMAIN.into(),
            input: vec![raw],
            output: vec![scores],
            attribute: vec![pb::AttributeProto {
                name: "post_transform".into(),
                r#type: pb::attribute_proto::AttributeType::String as i32,
                s: transform.into_bytes(),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    let count = inserted.len();
    graph.node.extend(inserted);
    count
}

impl Expansion for PostTransformOp {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        super::same_shape_rules(s, inputs, outputs, Some(DatumType::F32))?;
        s.equals(&inputs[0].datum_type, DatumType::F32)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.clone(), inputs)
    }
}

impl Op for PostTransformOp {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    op_as_typed_op!();
}

impl EvalOp for PostTransformOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut scores = args_1!(inputs).into_tensor();
        let width = scores.shape().last().copied().unwrap_or(1).max(1);
        {
            let mut view = scores.try_as_plain_ram_mut()?;
            view.as_slice_mut::<f32>()?
                .chunks_mut(width)
                .for_each(|row| self.0.apply(row));
        }
        Ok(tvec!(scores.into_tvalue()))
    }
}

impl TypedOp for PostTransformOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}
