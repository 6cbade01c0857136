//! ONNX-ML operators that scikit-learn exports and tract does not implement, registered with
//! tract's ONNX loader. Each follows the ONNX-ML operator specification and wires tract's own
//! typed ops where it can, so tract optimises them like any other graph.

mod array_feature_extractor;
mod binarizer;
mod fast_trees;
mod feature_vectorizer;
mod imputer;
mod label_encoder;
mod one_hot_encoder;
mod post_transform;
mod post_transform_op;
mod row_kernel;
mod scaler;
mod svm;
mod tree_regressor;

pub use fast_trees::replace_tract_kernels;
pub use post_transform_op::split_unsupported as split_unsupported_post_transforms;
use tract_onnx::model::OnnxOpRegister;

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("ArrayFeatureExtractor", array_feature_extractor::build);
    reg.insert("Binarizer", binarizer::build);
    reg.insert("FeatureVectorizer", feature_vectorizer::build);
    reg.insert("Imputer", imputer::build);
    reg.insert("LabelEncoder", label_encoder::build);
    reg.insert("OneHotEncoder", one_hot_encoder::build);
    reg.insert(post_transform_op::OP_TYPE, post_transform_op::build);
    reg.insert("Scaler", scaler::build);
    reg.insert("SVMClassifier", svm::build_classifier);
    reg.insert("SVMRegressor", svm::build_regressor);
    reg.insert("TreeEnsembleRegressor", tree_regressor::build);
}

use tract_hir::internal::*;

/// `x` as f32 (the ONNX-ML operators compute in float whatever their input type).
pub(crate) fn wire_f32(prefix: &str, model: &mut TypedModel, x: OutletId) -> TractResult<OutletId> {
    if model.outlet_fact(x)?.datum_type == f32::datum_type() {
        return Ok(x);
    }
    Ok(model.wire_node(
        format!("{prefix}.to_f32"),
        tract_core::ops::cast::cast(f32::datum_type()),
        &[x],
    )?[0])
}

/// A per-feature constant: one value for every feature, or one per feature (last axis).
pub(crate) fn feature_const(
    prefix: &str,
    name: &str,
    model: &mut TypedModel,
    values: &[f32],
) -> TractResult<OutletId> {
    model.add_const(format!("{prefix}.{name}"), rctensor1(values))
}

/// Float attributes as op state: tract ops must hash and compare, and f32 does neither.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Floats(pub Vec<f32>);

impl Eq for Floats {}

impl std::hash::Hash for Floats {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.iter().for_each(|v| v.to_bits().hash(state))
    }
}

/// A comparison as a typed op.
pub(crate) fn comparison(
    op: Box<dyn tract_core::ops::binary::BinMiniOp>,
) -> tract_core::ops::binary::TypedBinOp {
    tract_core::ops::binary::TypedBinOp(op, None)
}

/// Inference rules of a one-input, one-output op that keeps the shape: the output has
/// `output_type`, or the input's type when `None`.
pub(crate) fn same_shape_rules<'r, 'p: 'r>(
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
    output_type: Option<DatumType>,
) -> InferenceResult {
    check_input_arity(inputs, 1)?;
    check_output_arity(outputs, 1)?;
    match output_type {
        Some(dt) => s.equals(&outputs[0].datum_type, dt)?,
        None => s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?,
    }
    s.equals(&inputs[0].shape, &outputs[0].shape)
}
