//! A tree-ensemble kernel for large forests. tract's own kernel finds a leaf's weights by
//! skipping through every earlier leaf, so one row of a 300-tree GradientBoosting model took
//! 39 ms. Here each node is one compact record and a leaf points straight at its weights; the
//! loop runs tree by tree over all rows of the batch so a tree's nodes stay in cache.
//!
//! It evaluates tract's `TreeEnsemble` data unchanged: our TreeEnsembleRegressor wires it, and
//! `replace_tract_kernels` swaps it in for tract's kernel under tract's TreeEnsembleClassifier.

use tract_hir::internal::*;
use tract_onnx_opl::ml::tree::Aggregate;
use tract_onnx_opl::ml::tree_ensemble_classifier::{
    TreeEnsemble, TreeEnsembleClassifier as TractTrees,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Node {
    feature: u32,
    /// Threshold bits (nodes must hash).
    threshold: u32,
    /// Branch: next node when the test holds / fails. Leaf: first and end index of its weights.
    next_true: u32,
    next_false: u32,
    /// 0 for a leaf, else tract's comparator code (1 ==, 2 !=, 3 <, 4 >, 5 <=, 6 >=).
    cmp: u8,
    nan_goes_true: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FastTrees {
    roots: Vec<u32>,
    nodes: Vec<Node>,
    /// Per leaf weight: output index and weight bits.
    weights: Vec<(u32, u32)>,
    n_outputs: usize,
    n_features: usize,
    aggregate: Aggregate,
    /// Every branch is `<=`: the common case gets a branch-free step.
    all_leq: bool,
}

impl FastTrees {
    pub fn from_ensemble(e: &TreeEnsemble) -> TractResult<FastTrees> {
        let u32s = |t: &Tensor| -> TractResult<Vec<u32>> {
            Ok(t.try_as_plain_ram()?.as_slice::<u32>()?.to_vec())
        };
        let rows = u32s(&e.data.nodes)?;
        let leaves = u32s(&e.data.leaves)?;
        let roots = u32s(&e.data.trees)?;
        let n_nodes = rows.len() / 5;
        let nodes: Vec<Node> = rows
            .chunks_exact(5)
            .map(|r| {
                let cmp = (r[4] & 0xFF) as u8;
                // tract's rows: branch [feature, true, false, threshold, flags]; leaf [first, end, ..].
                let (next_true, next_false) = if cmp == 0 { (r[0], r[1]) } else { (r[1], r[2]) };
                Node {
                    feature: r[0],
                    threshold: r[3],
                    next_true,
                    next_false,
                    cmp,
                    nan_goes_true: r[4] & 0x100 != 0,
                }
            })
            .collect();
        let weights: Vec<(u32, u32)> = leaves.chunks_exact(2).map(|l| (l[0], l[1])).collect();
        // Validated once so evaluation cannot index out of bounds or loop forever.
        for (ix, n) in nodes.iter().enumerate() {
            match n.cmp {
                0 => ensure!(
                    n.next_true <= n.next_false && n.next_false as usize <= weights.len(),
                    "tree leaf {ix} points outside the weights"
                ),
                1..=6 => ensure!(
                    (n.next_true as usize) < n_nodes && (n.next_false as usize) < n_nodes,
                    "tree node {ix} points outside the nodes"
                ),
                other => bail!("tree node {ix} has unknown comparator {other}"),
            }
        }
        ensure!(
            roots.iter().all(|r| (*r as usize) < n_nodes),
            "a tree root is outside the nodes"
        );
        ensure!(
            weights.iter().all(|(o, _)| (*o as usize) < e.n_classes()),
            "a leaf weight targets a missing output"
        );
        Ok(FastTrees {
            roots,
            weights,
            n_outputs: e.n_classes(),
            n_features: e.max_used_feature + 1,
            aggregate: e.aggregate_fn,
            all_leq: nodes.iter().all(|n| n.cmp == 0 || n.cmp == 5),
            nodes,
        })
    }

    /// Next node from a branch, for any comparator.
    fn step_any(n: &Node, x: &[f32]) -> u32 {
        let v = x[n.feature as usize];
        let t = f32::from_bits(n.threshold);
        let go_true = if v.is_nan() {
            n.nan_goes_true
        } else {
            match n.cmp {
                5 => v <= t,
                3 => v < t,
                6 => v >= t,
                4 => v > t,
                1 => v == t,
                _ => v != t,
            }
        };
        if go_true { n.next_true } else { n.next_false }
    }

    /// Next node from a `<=` branch (what scikit-learn exports), without a branch to mispredict.
    fn step_leq(n: &Node, x: &[f32]) -> u32 {
        let v = x[n.feature as usize];
        let go_true = (v <= f32::from_bits(n.threshold)) | (v.is_nan() & n.nan_goes_true);
        [n.next_false, n.next_true][go_true as usize]
    }

    /// The leaves of one tree for `LANES` rows at once: their walks are independent chains of
    /// loads, so interleaving them keeps the CPU busy while each waits.
    fn leaves<const LANES: usize>(
        &self,
        root: u32,
        rows: [&[f32]; LANES],
        step: impl Fn(&Node, &[f32]) -> u32,
    ) -> [u32; LANES] {
        let mut at = [root; LANES];
        // Trees are acyclic in valid models; the bound stops a malformed one from spinning.
        for _ in 0..=self.nodes.len() {
            let mut moved = false;
            for lane in 0..LANES {
                let n = &self.nodes[at[lane] as usize];
                if n.cmp != 0 {
                    at[lane] = step(n, rows[lane]);
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        at
    }

    /// `x` is [rows, features] row-major; returns [rows, n_outputs].
    fn eval_rows(&self, x: &[f32], features: usize) -> Vec<f32> {
        let rows = x.len() / features.max(1);
        let k = self.n_outputs;
        let mut out = vec![0f32; rows * k];
        let mut counts = vec![
            0u32;
            if self.aggregate == Aggregate::Sum {
                0
            } else {
                rows * k
            }
        ];
        let mut add = |r: usize, leaf: u32| {
            let leaf = &self.nodes[leaf as usize];
            for &(o, w) in &self.weights[leaf.next_true as usize..leaf.next_false as usize] {
                let (slot, w) = (r * k + o as usize, f32::from_bits(w));
                match self.aggregate {
                    Aggregate::Sum => out[slot] += w,
                    Aggregate::Avg => {
                        out[slot] += w;
                        counts[slot] += 1;
                    }
                    Aggregate::Max | Aggregate::Min => {
                        let better = if self.aggregate == Aggregate::Max {
                            w > out[slot]
                        } else {
                            w < out[slot]
                        };
                        if counts[slot] == 0 || better {
                            out[slot] = w;
                        }
                        counts[slot] += 1;
                    }
                }
            }
        };
        const LANES: usize = 4;
        let all_leq = self.all_leq;
        let row = |r: usize| &x[r * features..(r + 1) * features];
        // Tree by tree over all rows: one tree's nodes stay in cache for the whole batch.
        for &root in &self.roots {
            let mut r = 0;
            while r + LANES <= rows {
                let lanes = std::array::from_fn(|j| row(r + j));
                let leaves = if all_leq {
                    self.leaves::<LANES>(root, lanes, Self::step_leq)
                } else {
                    self.leaves::<LANES>(root, lanes, Self::step_any)
                };
                leaves
                    .iter()
                    .enumerate()
                    .for_each(|(j, leaf)| add(r + j, *leaf));
                r += LANES;
            }
            for r in r..rows {
                let [leaf] = if all_leq {
                    self.leaves::<1>(root, [row(r)], Self::step_leq)
                } else {
                    self.leaves::<1>(root, [row(r)], Self::step_any)
                };
                add(r, leaf);
            }
        }
        if self.aggregate == Aggregate::Avg {
            out.iter_mut()
                .zip(&counts)
                .filter(|(_, c)| **c > 1)
                .for_each(|(v, c)| *v /= *c as f32);
        }
        out
    }
}

impl Op for FastTrees {
    fn name(&self) -> StaticName {
        "TreeEnsemble".into()
    }

    op_as_typed_op!();
}

impl EvalOp for FastTrees {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let x = input.cast_to::<f32>()?;
        let shape = x.shape().to_vec();
        let features = *shape.last().context("tree ensemble input is a scalar")?;
        ensure!(
            features >= self.n_features,
            "tree ensemble uses feature #{} but the input has {features} features",
            self.n_features - 1
        );
        let out = self.eval_rows(x.try_as_plain_ram()?.as_slice::<f32>()?, features);
        let out_shape: Vec<usize> = if shape.len() == 1 {
            vec![self.n_outputs]
        } else {
            vec![shape[0], self.n_outputs]
        };
        Ok(tvec!(tensor1(&out).into_shape(&out_shape)?.into_tvalue()))
    }
}

impl TypedOp for FastTrees {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs[0].rank() == 2,
            "tree ensembles take [batch, features] inputs"
        );
        Ok(tvec!(f32::fact([
            inputs[0].shape[0].clone(),
            self.n_outputs.to_dim()
        ])))
    }

    as_op!();
}

/// Swaps tract's tree kernel (used by its TreeEnsembleClassifier) for this one, in place.
pub fn replace_tract_kernels(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for node in model.nodes_mut() {
        if let Some(tract_op) = node.op_as::<TractTrees>() {
            node.op = Box::new(FastTrees::from_ensemble(&tract_op.ensemble)?);
            replaced += 1;
        }
    }
    Ok(replaced)
}
