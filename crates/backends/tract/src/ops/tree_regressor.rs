//! `TreeEnsembleRegressor` (ai.onnx.ml): GradientBoosting, RandomForest and ExtraTrees
//! regressors. Nodes are flattened into one array evaluated by tract's tree-ensemble kernel;
//! base values and the post-transform are wired as ordinary tract ops.

use std::collections::HashMap;

use tract_hir::internal::*;
use tract_hir::ops::logic::wire_with_rank_broadcast;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;

use super::post_transform::PostTransform;
use super::post_transform_op::PostTransformOp;
use tract_onnx_opl::ml::tree_ensemble_classifier::{
    Cmp, TreeEnsemble, TreeEnsembleData, parse_aggregate,
};

#[derive(Debug, Clone, PartialEq)]
struct TreeEnsembleRegressor {
    ensemble: TreeEnsemble,
    base_values: Option<Vec<f32>>,
    post_transform: PostTransform,
}

impl Eq for TreeEnsembleRegressor {}

impl std::hash::Hash for TreeEnsembleRegressor {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.ensemble.hash(state);
        self.base_values
            .iter()
            .flatten()
            .for_each(|v| v.to_bits().hash(state));
        self.post_transform.hash(state);
    }
}

/// Floats given either as a list attribute or, from ai.onnx.ml opset 3, as a tensor attribute.
fn floats(node: &NodeProto, name: &str) -> TractResult<Option<Vec<f32>>> {
    if let Some(v) = node.get_attr_opt_vec::<f32>(name)? {
        return Ok(Some(v));
    }
    let tensor_name = format!("{name}_as_tensor");
    match node
        .attribute
        .iter()
        .find(|a| a.name == tensor_name)
        .and_then(|a| a.t.as_ref())
    {
        Some(t) => {
            let t = tract_onnx::tensor::load_tensor(
                &tract_onnx::data_resolver::MmapDataResolver,
                t,
                None,
            )?;
            Ok(Some(
                t.cast_to::<f32>()?
                    .try_as_plain_ram()?
                    .as_slice::<f32>()?
                    .to_vec(),
            ))
        }
        None => Ok(None),
    }
}

fn required_floats(node: &NodeProto, name: &str) -> TractResult<Vec<f32>> {
    floats(node, name)?.with_context(|| format!("TreeEnsembleRegressor needs attribute {name}"))
}

fn ints(node: &NodeProto, name: &str, len: usize) -> TractResult<Vec<i64>> {
    let v = node.get_attr_vec::<i64>(name)?;
    ensure!(
        v.len() == len,
        "attribute {name} has {} entries, expected {len}",
        v.len()
    );
    Ok(v)
}

fn index(v: i64, what: &str) -> TractResult<u32> {
    u32::try_from(v).map_err(|_| format_err!("{what} {v} is out of range"))
}

pub fn build(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let n_targets = node.get_attr::<i64>("n_targets")?;
    ensure!(n_targets > 0, "n_targets must be positive");
    let aggregate = parse_aggregate(
        node.get_attr_opt::<&str>("aggregate_function")?
            .unwrap_or("SUM"),
    )?;
    let post_transform = PostTransform::parse(
        node.get_attr_opt::<&str>("post_transform")?
            .unwrap_or("NONE"),
    )?;
    let base_values = floats(node, "base_values")?.filter(|v| !v.is_empty());
    if let Some(b) = &base_values {
        ensure!(
            b.len() == n_targets as usize,
            "base_values has {} entries for {n_targets} targets",
            b.len()
        );
    }
    let ensemble = flatten(node, n_targets as usize, aggregate)?;
    Ok((
        expand(TreeEnsembleRegressor {
            ensemble,
            base_values,
            post_transform,
        }),
        vec![],
    ))
}

/// One row per node in tract's layout: branches are `feature, true row, false row, value bits,
/// comparator | 0x100 when NaN goes true`; leaves are `first, end` rows of their targets.
fn flatten(
    node: &NodeProto,
    n_targets: usize,
    aggregate: tract_onnx_opl::ml::tree::Aggregate,
) -> TractResult<TreeEnsemble> {
    let n = node.get_attr_vec::<i64>("nodes_nodeids")?.len();
    ensure!(n > 0, "TreeEnsembleRegressor has no nodes");
    let tree_ids = ints(node, "nodes_treeids", n)?;
    let node_ids = ints(node, "nodes_nodeids", n)?;
    let features = ints(node, "nodes_featureids", n)?;
    let true_ids = ints(node, "nodes_truenodeids", n)?;
    let false_ids = ints(node, "nodes_falsenodeids", n)?;
    let values = required_floats(node, "nodes_values")?;
    ensure!(
        values.len() == n,
        "nodes_values has {} entries, expected {n}",
        values.len()
    );
    let modes = node.get_attr_vec::<&str>("nodes_modes")?;
    ensure!(
        modes.len() == n,
        "nodes_modes has {} entries, expected {n}",
        modes.len()
    );
    let nan_true = node
        .get_attr_opt_vec::<i64>("nodes_missing_value_tracks_true")?
        .unwrap_or_else(|| vec![0; n]);
    ensure!(
        nan_true.len() == n,
        "nodes_missing_value_tracks_true has {} entries, expected {n}",
        nan_true.len()
    );

    let t = node.get_attr_vec::<i64>("target_ids")?.len();
    let leaf_trees = ints(node, "target_treeids", t)?;
    let leaf_nodes = ints(node, "target_nodeids", t)?;
    let leaf_targets = ints(node, "target_ids", t)?;
    let weights = required_floats(node, "target_weights")?;
    ensure!(
        weights.len() == t,
        "target_weights has {} entries, expected {t}",
        weights.len()
    );

    // Rows ordered by (tree, node id); children are found through this map, whatever the ids.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (tree_ids[i], node_ids[i]));
    let row_of: HashMap<(i64, i64), u32> = order
        .iter()
        .enumerate()
        .map(|(row, &i)| ((tree_ids[i], node_ids[i]), row as u32))
        .collect();
    let mut targets_of: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
    for i in 0..t {
        targets_of
            .entry((leaf_trees[i], leaf_nodes[i]))
            .or_default()
            .push(i);
    }

    let mut nodes: Vec<u32> = Vec::with_capacity(n * 5);
    let mut leaves: Vec<u32> = Vec::with_capacity(t * 2);
    let mut roots: Vec<u32> = Vec::new();
    let mut is_child = vec![false; n];
    let mut max_feature = 0usize;
    for &i in &order {
        let tree = tree_ids[i];
        let child = |id: i64| {
            row_of
                .get(&(tree, id))
                .copied()
                .with_context(|| format!("tree {tree} has no node {id}"))
        };
        let mut cmp = match modes[i] {
            "LEAF" => None,
            "BRANCH_LEQ" => Some(Cmp::LessEqual),
            "BRANCH_LT" => Some(Cmp::Less),
            "BRANCH_GT" => Some(Cmp::Greater),
            "BRANCH_EQ" => Some(Cmp::Equal),
            "BRANCH_NEQ" => Some(Cmp::NotEqual),
            "BRANCH_GTE" => Some(Cmp::GreaterEqual),
            other => bail!("unknown node mode {other}"),
        };
        match cmp.take() {
            Some(mut cmp) => {
                let (mut t_row, mut f_row, mut nan_goes_true) =
                    (child(true_ids[i])?, child(false_ids[i])?, nan_true[i] != 0);
                // x >= v is not(x < v): same routing with the branches swapped (NaN included).
                if cmp == Cmp::GreaterEqual {
                    cmp = Cmp::Less;
                    std::mem::swap(&mut t_row, &mut f_row);
                    nan_goes_true = !nan_goes_true;
                }
                is_child[order[t_row as usize]] = true;
                is_child[order[f_row as usize]] = true;
                let feature = index(features[i], "feature id")?;
                max_feature = max_feature.max(feature as usize);
                let flags = cmp.to_u8() as u32 | if nan_goes_true { 0x100 } else { 0 };
                nodes.extend([feature, t_row, f_row, values[i].to_bits(), flags]);
            }
            None => {
                let start = (leaves.len() / 2) as u32;
                for &k in targets_of
                    .get(&(tree, node_ids[i]))
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    let target = index(leaf_targets[k], "target id")?;
                    ensure!(
                        (target as usize) < n_targets,
                        "target id {target} is not below n_targets {n_targets}"
                    );
                    leaves.extend([target, weights[k].to_bits()]);
                }
                nodes.extend([start, (leaves.len() / 2) as u32, 0, 0, 0]);
            }
        }
    }
    // A tree's root is its node that no branch points to.
    let mut last_tree = None;
    for (row, &i) in order.iter().enumerate() {
        if !is_child[i] && last_tree != Some(tree_ids[i]) {
            roots.push(row as u32);
            last_tree = Some(tree_ids[i]);
        }
    }
    let data = TreeEnsembleData {
        trees: rctensor1(&roots),
        nodes: tensor1(&nodes).into_shape(&[n, 5])?.into_arc_tensor(),
        leaves: tensor1(&leaves)
            .into_shape(&[leaves.len() / 2, 2])?
            .into_arc_tensor(),
    };
    TreeEnsemble::build(data, max_feature, n_targets, aggregate)
}

impl Expansion for TreeEnsembleRegressor {
    fn name(&self) -> StaticName {
        "TreeEnsembleRegressor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], self.ensemble.n_classes().to_dim())?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let trees = super::fast_trees::FastTrees::from_ensemble(&self.ensemble)?;
        let mut y = model.wire_node(format!("{prefix}.trees"), trees, inputs)?[0];
        if let Some(base) = &self.base_values {
            let base = model.add_const(format!("{prefix}.base"), rctensor1(base))?;
            y = wire_with_rank_broadcast(
                format!("{prefix}.add_base"),
                model,
                tract_core::ops::math::add(),
                &[y, base],
            )?[0];
        }
        y = match self.post_transform {
            PostTransform::None => y,
            PostTransform::Logistic => model.wire_node(
                format!("{prefix}.logistic"),
                tract_core::ops::nn::sigmoid(),
                &[y],
            )?[0],
            PostTransform::Softmax => tract_hir::ops::nn::LayerSoftmax::new(1, false).wire(
                &format!("{prefix}.softmax"),
                model,
                &[y],
            )?[0],
            other => model.wire_node(
                format!("{prefix}.post_transform"),
                PostTransformOp(other),
                &[y],
            )?[0],
        };
        Ok(tvec!(y))
    }
}
