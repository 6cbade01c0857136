//! XGBoost's JSON model (`Booster.save_model("model.json")`), gbtree boosters.

use serde_json::Value;

use crate::forest::{Forest, Missing, Node, Transform, Tree};

fn text<'a>(v: &'a Value, what: &str) -> Result<&'a str, String> {
    v.as_str().ok_or_else(|| format!("{what} is missing"))
}

fn int(v: &Value, what: &str) -> Result<usize, String> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64().map(|n| n as usize),
        _ => None,
    }
    .ok_or_else(|| format!("{what} is not a count"))
}

fn numbers<'a>(tree: &'a Value, key: &str) -> Result<&'a Vec<Value>, String> {
    tree[key]
        .as_array()
        .ok_or_else(|| format!("a tree has no {key}"))
}

/// `"5E-1"`, `"[5E-1]"` or `"[0E0,0E0,0E0]"`.
fn base_score(s: &str) -> Result<Vec<f64>, String> {
    s.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .map_err(|_| format!("base_score '{s}' is not a number"))
        })
        .collect()
}

pub fn parse(json: &str) -> Result<Forest, String> {
    let root: Value =
        serde_json::from_str(json).map_err(|e| format!("not an XGBoost JSON model: {e}"))?;
    let learner = &root["learner"];
    if !learner.is_object() {
        return Err("not an XGBoost JSON model (no \"learner\")".into());
    }
    let param = &learner["learner_model_param"];
    let features = int(&param["num_feature"], "learner_model_param.num_feature")?;
    let groups = int(&param["num_class"], "learner_model_param.num_class")?.max(1);
    if param
        .get("num_target")
        .is_some_and(|t| int(t, "num_target").is_ok_and(|t| t > 1))
    {
        return Err("multi-target models are not supported yet".into());
    }
    let objective = text(&learner["objective"]["name"], "objective.name")?;
    let booster = &learner["gradient_booster"];
    let kind = text(&booster["name"], "gradient_booster.name")?;
    if kind != "gbtree" {
        return Err(format!(
            "booster '{kind}' is not supported; inferd evaluates gbtree models"
        ));
    }
    let scores = base_score(text(&param["base_score"], "base_score")?)?;
    let (transform, to_margin): (Transform, fn(f64) -> f64) = match objective {
        "binary:logistic" | "reg:logistic" => (Transform::Sigmoid(1.0), |p| (p / (1.0 - p)).ln()),
        "binary:logitraw" => (Transform::Identity, |p| (p / (1.0 - p)).ln()),
        "reg:squarederror"
        | "reg:squaredlogerror"
        | "reg:absoluteerror"
        | "reg:pseudohubererror"
        | "reg:linear" => (Transform::Identity, |m| m),
        "multi:softprob" => (Transform::Softmax, |m| m),
        other => {
            return Err(format!(
                "objective '{other}' is not supported (binary:logistic, binary:logitraw, \
                 reg:logistic, reg:squarederror and the other reg: losses, multi:softprob)"
            ));
        }
    };
    let base_margin = match scores.len() {
        1 => vec![to_margin(scores[0]); groups],
        n if n == groups => scores.into_iter().map(to_margin).collect(),
        n => return Err(format!("base_score has {n} values for {groups} outputs")),
    };
    let model = &booster["model"];
    let trees = model["trees"]
        .as_array()
        .ok_or("the model has no trees array")?;
    let info = model["tree_info"].as_array();
    let trees = trees
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let group = info
                .and_then(|info| info.get(i))
                .map_or(Ok(0), |g| int(g, "tree_info"))?;
            if group >= groups {
                return Err(format!("tree {i} adds to output {group} of {groups}"));
            }
            tree(t, features).map(|nodes| Tree { nodes, group })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Forest::new(trees, features, groups, base_margin, transform, true)
}

fn tree(t: &Value, features: usize) -> Result<Vec<Node>, String> {
    let leaf_size = &t["tree_param"]["size_leaf_vector"];
    if !leaf_size.is_null() && int(leaf_size, "size_leaf_vector")? > 1 {
        return Err("trees with vector leaves (multi_strategy) are not supported yet".into());
    }
    let left = numbers(t, "left_children")?;
    let right = numbers(t, "right_children")?;
    let feature = numbers(t, "split_indices")?;
    let condition = numbers(t, "split_conditions")?;
    let default_left = numbers(t, "default_left")?;
    let kind = t["split_type"].as_array();
    let n = left.len();
    if [
        right.len(),
        feature.len(),
        condition.len(),
        default_left.len(),
    ]
    .iter()
    .any(|l| *l != n)
    {
        return Err("a tree's node arrays differ in length".into());
    }
    let child = |v: &Value| -> Result<u32, String> {
        v.as_i64()
            .filter(|c| *c >= 0 && (*c as usize) < n)
            .map(|c| c as u32)
            .ok_or_else(|| format!("a tree refers to node {v} of {n}"))
    };
    (0..n)
        .map(|i| {
            let value = condition[i]
                .as_f64()
                .ok_or("split_conditions holds a non-number")?;
            if left[i].as_i64() == Some(-1) {
                return Ok(Node::Leaf(value));
            }
            if kind
                .and_then(|k| k.get(i))
                .and_then(Value::as_i64)
                .unwrap_or(0)
                != 0
            {
                return Err("categorical splits in XGBoost models are not supported yet".into());
            }
            let f = feature[i].as_u64().filter(|f| (*f as usize) < features);
            let f =
                f.ok_or_else(|| format!("a split uses feature {} of {features}", feature[i]))?;
            Ok(Node::Numeric {
                feature: f as u32,
                // XGBoost goes left when x < t; x is an f32, so that is x <= the f32 below t.
                threshold: (value as f32).next_down() as f64,
                missing: Missing::NanDefault,
                // Newer versions write 0/1, older ones true/false.
                default_left: default_left[i].as_i64() == Some(1)
                    || default_left[i].as_bool() == Some(true),
                left: child(&left[i])?,
                right: child(&right[i])?,
            })
        })
        .collect()
}
