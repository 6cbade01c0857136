//! LightGBM's text model (`Booster.save_model("model.txt")`): numerical splits with the three
//! missing-value rules, and categorical splits as bitsets.

use std::collections::HashMap;

use crate::forest::{Forest, Missing, Node, Transform, Tree};

fn field<'a>(block: &HashMap<&str, &'a str>, key: &str) -> Result<&'a str, String> {
    block
        .get(key)
        .copied()
        .ok_or_else(|| format!("'{key}' is missing"))
}

fn list<T: std::str::FromStr>(block: &HashMap<&str, &str>, key: &str) -> Result<Vec<T>, String> {
    field(block, key)?
        .split_whitespace()
        .map(|v| v.parse().map_err(|_| format!("'{key}' holds '{v}'")))
        .collect()
}

pub fn parse(text: &str) -> Result<Forest, String> {
    if !text.starts_with("tree") {
        return Err("not a LightGBM text model (it starts with \"tree\")".into());
    }
    let mut blocks = text.split("\n\n").map(|b| {
        b.lines()
            .filter_map(|l| l.split_once('='))
            .collect::<HashMap<&str, &str>>()
    });
    let header = blocks.next().unwrap_or_default();
    let features: usize = field(&header, "max_feature_idx")?
        .trim()
        .parse::<usize>()
        .map_err(|e| format!("max_feature_idx: {e}"))?
        + 1;
    let per_iteration: usize = field(&header, "num_tree_per_iteration")?
        .trim()
        .parse()
        .map_err(|e| format!("num_tree_per_iteration: {e}"))?;
    let objective = field(&header, "objective")?;
    if objective.split_whitespace().any(|w| w == "sqrt") {
        return Err(format!(
            "objective '{objective}' (sqrt-transformed targets) is not supported yet"
        ));
    }
    // Random-forest mode writes a bare `average_output` line: trees average, not add up.
    let average = text
        .lines()
        .take_while(|l| !l.starts_with("Tree="))
        .any(|l| l.trim() == "average_output");
    let mut words = objective.split_whitespace();
    let transform = match words.next().unwrap_or_default() {
        "binary" | "cross_entropy" | "xentropy" => {
            let scale = words
                .find_map(|w| w.strip_prefix("sigmoid:"))
                .map_or(Ok(1.0), |s| {
                    s.parse::<f64>().map_err(|e| format!("sigmoid: {e}"))
                })?;
            Transform::Sigmoid(scale)
        }
        "multiclass" | "softmax" => Transform::Softmax,
        "regression" | "regression_l2" | "regression_l1" | "l2" | "l1" | "huber" | "fair"
        | "quantile" | "mape" => Transform::Identity,
        other => {
            return Err(format!(
                "objective '{other}' is not supported (binary, multiclass, regression and its \
                 variants)"
            ));
        }
    };
    let mut trees = Vec::new();
    for block in blocks {
        if !block.contains_key("Tree") {
            continue;
        }
        let index = trees.len();
        let nodes = tree(&block, features).map_err(|e| format!("Tree={index}: {e}"))?;
        trees.push(Tree {
            nodes,
            group: index % per_iteration.max(1),
        });
    }
    if trees.is_empty() {
        return Err("the model has no trees".into());
    }
    if average {
        let iterations = (trees.len() / per_iteration.max(1)).max(1) as f64;
        for tree in &mut trees {
            for node in &mut tree.nodes {
                if let Node::Leaf(v) = node {
                    *v /= iterations;
                }
            }
        }
    }
    Forest::new(
        trees,
        features,
        per_iteration.max(1),
        vec![0.0; per_iteration.max(1)],
        transform,
        false,
    )
}

fn tree(block: &HashMap<&str, &str>, features: usize) -> Result<Vec<Node>, String> {
    if block.get("is_linear").is_some_and(|v| v.trim() != "0") {
        return Err("linear trees (linear_tree=true) are not supported yet".into());
    }
    let leaves: Vec<f64> = list(block, "leaf_value")?;
    let num_leaves: usize = field(block, "num_leaves")?
        .trim()
        .parse()
        .map_err(|e| format!("num_leaves: {e}"))?;
    if num_leaves <= 1 {
        return Ok(vec![Node::Leaf(leaves.first().copied().unwrap_or(0.0))]);
    }
    let feature: Vec<u32> = list(block, "split_feature")?;
    let threshold: Vec<f64> = list(block, "threshold")?;
    let decision: Vec<u8> = list(block, "decision_type")?;
    let left: Vec<i64> = list(block, "left_child")?;
    let right: Vec<i64> = list(block, "right_child")?;
    let internal = num_leaves - 1;
    if [
        feature.len(),
        threshold.len(),
        decision.len(),
        left.len(),
        right.len(),
    ]
    .iter()
    .any(|n| *n != internal)
        || leaves.len() != num_leaves
    {
        return Err("node arrays do not match num_leaves".into());
    }
    let (bounds, bits): (Vec<usize>, Vec<u32>) = if block.contains_key("cat_boundaries") {
        (
            list(block, "cat_boundaries")?,
            list(block, "cat_threshold")?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    // Internal nodes first, then leaf j at internal + j; a negative child c is leaf !c.
    let child = |c: i64| -> Result<u32, String> {
        let at = if c >= 0 {
            c as usize
        } else {
            internal + (!c) as usize
        };
        (at < internal + num_leaves)
            .then_some(at as u32)
            .ok_or_else(|| format!("child {c} is out of range"))
    };
    let mut nodes = Vec::with_capacity(internal + num_leaves);
    for i in 0..internal {
        if feature[i] as usize >= features {
            return Err(format!("a split uses feature {} of {features}", feature[i]));
        }
        let (left, right) = (child(left[i])?, child(right[i])?);
        let dt = decision[i];
        nodes.push(if dt & 1 == 1 {
            let at = threshold[i] as usize;
            let (from, to) = match (bounds.get(at), bounds.get(at + 1)) {
                (Some(from), Some(to)) if from <= to && *to <= bits.len() => (*from, *to),
                _ => return Err(format!("categorical split {i} has no category set")),
            };
            Node::Categorical {
                feature: feature[i],
                categories: bits[from..to].to_vec(),
                left,
                right,
            }
        } else {
            Node::Numeric {
                feature: feature[i],
                threshold: threshold[i],
                missing: match (dt >> 2) & 3 {
                    0 => Missing::NanIsZero,
                    1 => Missing::ZeroDefault,
                    _ => Missing::NanDefault,
                },
                default_left: dt & 2 != 0,
                left,
                right,
            }
        });
    }
    nodes.extend(leaves.into_iter().map(Node::Leaf));
    Ok(nodes)
}
