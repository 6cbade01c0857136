//! One layout for both libraries' trees: flat node arrays, rows walked tree by tree so a tree's
//! nodes stay in cache while a batch goes through it.

/// How a node treats a missing (NaN) or zero feature value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// NaN goes the default way (XGBoost; LightGBM's `missing_type = NaN`).
    NanDefault,
    /// NaN is read as 0 (LightGBM `None`).
    NanIsZero,
    /// NaN is read as 0, and zero goes the default way (LightGBM `Zero`).
    ZeroDefault,
}

#[derive(Debug, Clone)]
pub enum Node {
    /// Goes left when `x <= threshold` (XGBoost's strict `<` is stored as `<=` the float below).
    Numeric {
        feature: u32,
        threshold: f64,
        missing: Missing,
        default_left: bool,
        left: u32,
        right: u32,
    },
    /// Goes left when the integer category is in `categories` (LightGBM bitset); NaN and
    /// negative values go right.
    Categorical {
        feature: u32,
        categories: Vec<u32>,
        left: u32,
        right: u32,
    },
    Leaf(f64),
}

#[derive(Debug, Clone)]
pub struct Tree {
    pub nodes: Vec<Node>,
    /// Output (class) the tree adds to.
    pub group: usize,
}

/// Every node reachable from the root exactly once: no cycle can make evaluation loop, and an
/// empty tree is refused. (Children need not follow their parent: XGBoost reuses freed slots.)
fn check_structure(nodes: &[Node]) -> Result<(), String> {
    if nodes.is_empty() {
        return Err("it has no nodes".into());
    }
    let mut seen = vec![false; nodes.len()];
    let mut stack = vec![0u32];
    while let Some(at) = stack.pop() {
        let at = at as usize;
        let Some(node) = nodes.get(at) else {
            return Err(format!("a child index {at} is out of range"));
        };
        if std::mem::replace(&mut seen[at], true) {
            return Err(format!(
                "node {at} is reached twice (a cycle or a shared subtree)"
            ));
        }
        match node {
            Node::Leaf(_) => {}
            Node::Numeric { left, right, .. } | Node::Categorical { left, right, .. } => {
                stack.extend([*left, *right]);
            }
        }
    }
    Ok(())
}

/// Margins to outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    Identity,
    /// 1 / (1 + exp(-scale * margin)).
    Sigmoid(f64),
    Softmax,
}

#[derive(Debug, Clone)]
pub struct Forest {
    packed: Vec<PackedTree>,
    pub features: usize,
    /// Margin outputs per row (classes for multi-class, else 1).
    pub groups: usize,
    /// Added to every margin before the transform, per group.
    pub base_margin: Vec<f64>,
    pub transform: Transform,
    /// Sum margins in f32, tree by tree, as XGBoost does (LightGBM sums in f64).
    pub f32_sums: bool,
}

/// A node in 16 bytes, so a 300-tree, depth-8 ensemble stays in cache. `meta` holds the feature
/// (or, for a leaf, the index of its value) in the low 24 bits and the flags above.
#[derive(Debug, Clone, Copy)]
struct Packed {
    meta: u32,
    /// The largest f32 not above the split value: for an f32 input x, `x <= t` in f64 is
    /// `x <= threshold` in f32. For a categorical split, the index of its category set.
    threshold: f32,
    left: u32,
    right: u32,
}

const LEAF: u32 = 1 << 31;
const CATEGORICAL: u32 = 1 << 30;
const DEFAULT_LEFT: u32 = 1 << 29;
const NAN_IS_ZERO: u32 = 1 << 28;
const ZERO_DEFAULT: u32 = 1 << 27;
const INDEX: u32 = (1 << 24) - 1;
/// LightGBM's kZeroThreshold.
const ZERO: f32 = 1e-35;

#[derive(Debug, Clone, Default)]
struct PackedTree {
    nodes: Vec<Packed>,
    leaves: Vec<f64>,
    categories: Vec<Vec<u32>>,
    group: usize,
}

fn f32_floor(t: f64) -> f32 {
    let f = t as f32;
    if f as f64 > t { f.next_down() } else { f }
}

impl PackedTree {
    /// Packs a parsed tree; the parsers checked every feature against the model's count, and
    /// `Forest::new` that count against the 24 bits.
    fn pack(tree: &Tree) -> PackedTree {
        let mut packed = PackedTree {
            group: tree.group,
            ..PackedTree::default()
        };
        for node in &tree.nodes {
            let n = match node {
                Node::Leaf(v) => {
                    packed.leaves.push(*v);
                    Packed {
                        meta: LEAF | (packed.leaves.len() as u32 - 1),
                        threshold: 0.0,
                        left: 0,
                        right: 0,
                    }
                }
                Node::Numeric {
                    feature,
                    threshold,
                    missing,
                    default_left,
                    left,
                    right,
                } => Packed {
                    meta: *feature
                        | if *default_left { DEFAULT_LEFT } else { 0 }
                        | match missing {
                            Missing::NanDefault => 0,
                            Missing::NanIsZero => NAN_IS_ZERO,
                            Missing::ZeroDefault => NAN_IS_ZERO | ZERO_DEFAULT,
                        },
                    threshold: f32_floor(*threshold),
                    left: *left,
                    right: *right,
                },
                Node::Categorical {
                    feature,
                    categories,
                    left,
                    right,
                } => {
                    packed.categories.push(categories.clone());
                    Packed {
                        meta: *feature | CATEGORICAL,
                        threshold: f32::from_bits(packed.categories.len() as u32 - 1),
                        left: *left,
                        right: *right,
                    }
                }
            };
            packed.nodes.push(n);
        }
        packed
    }

    #[inline]
    fn leaf(&self, row: &[f32]) -> f64 {
        let mut n = self.nodes[0];
        while n.meta & LEAF == 0 {
            let x = row[(n.meta & INDEX) as usize];
            let left = if n.meta & CATEGORICAL != 0 {
                let set = &self.categories[n.threshold.to_bits() as usize];
                // LightGBM truncates toward zero: -0.5 is category 0; NaN and negatives go right.
                !x.is_nan() && x > -1.0 && {
                    let c = x as u32;
                    set.get((c / 32) as usize)
                        .is_some_and(|w| w >> (c % 32) & 1 == 1)
                }
            } else if x.is_nan() {
                // NaN goes the default way, unless it reads as a zero that is an ordinary value.
                if n.meta & NAN_IS_ZERO == 0 || n.meta & ZERO_DEFAULT != 0 {
                    n.meta & DEFAULT_LEFT != 0
                } else {
                    0.0 <= n.threshold
                }
            } else if n.meta & ZERO_DEFAULT != 0 && x.abs() <= ZERO {
                n.meta & DEFAULT_LEFT != 0
            } else {
                x <= n.threshold
            };
            n = self.nodes[if left { n.left } else { n.right } as usize];
        }
        self.leaves[(n.meta & INDEX) as usize]
    }
}

impl Forest {
    pub fn new(
        trees: Vec<Tree>,
        features: usize,
        groups: usize,
        base_margin: Vec<f64>,
        transform: Transform,
        f32_sums: bool,
    ) -> Result<Forest, String> {
        if features == 0 || features > INDEX as usize {
            return Err(format!(
                "a model of {features} features cannot be evaluated"
            ));
        }
        for (i, tree) in trees.iter().enumerate() {
            check_structure(&tree.nodes).map_err(|e| format!("tree {i}: {e}"))?;
        }
        let packed = trees.iter().map(PackedTree::pack).collect();
        Ok(Forest {
            packed,
            features,
            groups,
            base_margin,
            transform,
            f32_sums,
        })
    }

    /// Values per row that [`Forest::predict`] expects.
    pub fn features(&self) -> usize {
        self.features
    }

    pub fn tree_count(&self) -> usize {
        self.packed.len()
    }

    /// Outputs for `rows` rows of `features` values each: `rows * groups` values, row-major.
    pub fn predict(&self, data: &[f32]) -> Vec<f32> {
        let rows = data.len() / self.features.max(1);
        let mut margins: Vec<f64> = (0..rows)
            .flat_map(|_| self.base_margin.iter().copied())
            .collect();
        if self.f32_sums {
            margins.iter_mut().for_each(|m| *m = *m as f32 as f64);
        }
        for tree in &self.packed {
            for (r, row) in data.chunks_exact(self.features).enumerate() {
                let m = &mut margins[r * self.groups + tree.group];
                *m = if self.f32_sums {
                    (*m as f32 + tree.leaf(row) as f32) as f64
                } else {
                    *m + tree.leaf(row)
                };
            }
        }
        match self.transform {
            Transform::Identity => margins.iter().map(|m| *m as f32).collect(),
            Transform::Sigmoid(scale) => margins
                .iter()
                .map(|m| (1.0 / (1.0 + (-scale * m).exp())) as f32)
                .collect(),
            Transform::Softmax => margins
                .chunks_exact(self.groups)
                .flat_map(|row| {
                    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = row.iter().map(|m| (m - max).exp()).sum();
                    row.iter().map(move |m| ((m - max).exp() / sum) as f32)
                })
                .collect(),
        }
    }
}
