//! Shadow copies: a share of a model's requests also runs on a shadow version, on a queue of
//! its own served by an idle-priority thread (the primary's threads always win the CPU), and the
//! two answers are compared. The caller gets the primary's answer and never waits for the
//! shadow; a copy that finds the shadow's queue full is dropped and counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use inferd_core::{DataType, NamedTensor, Tensor};
use serde::Serialize;

use crate::stats::{Histogram, HistogramSnapshot};
use crate::{InferResponse, Runtime};

/// Upper bounds of the largest-absolute-difference histogram.
pub const DIFF_BUCKETS: &[f64] = &[0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0];

/// Float outputs within this of each other match, unless the policy says otherwise.
pub const DEFAULT_TOLERANCE: f64 = 1e-5;

/// Comparisons of one shadow version against the versions it shadowed.
#[derive(Default)]
pub(crate) struct ShadowStats {
    pub matched: AtomicU64,
    pub mismatched: AtomicU64,
    pub errors: AtomicU64,
    pub dropped: AtomicU64,
    /// Largest absolute difference per float output.
    pub diffs: Mutex<BTreeMap<String, Arc<Histogram>>>,
}

/// What `GET /traffic` and `/metrics` report of a shadow.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowFigures {
    pub version: u64,
    #[serde(rename = "match")]
    pub matched: u64,
    pub mismatch: u64,
    pub error: u64,
    pub dropped: u64,
    /// Matches over comparisons, when there were any.
    pub agreement: Option<f64>,
    #[serde(skip)]
    pub diffs: Vec<(String, HistogramSnapshot)>,
}

impl ShadowStats {
    fn figures(&self, version: u64) -> ShadowFigures {
        let (m, mm) = (self.matched.load(Relaxed), self.mismatched.load(Relaxed));
        ShadowFigures {
            version,
            matched: m,
            mismatch: mm,
            error: self.errors.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            agreement: (m + mm > 0).then(|| m as f64 / (m + mm) as f64),
            diffs: self
                .diffs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(name, h)| (name.clone(), h.snapshot()))
                .collect(),
        }
    }

    fn diff(&self, output: &str) -> Arc<Histogram> {
        let mut diffs = self.diffs.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            diffs
                .entry(output.to_string())
                .or_insert_with(|| Arc::new(Histogram::new(DIFF_BUCKETS))),
        )
    }
}

/// Shadow statistics of every (model, shadow version).
#[derive(Default)]
pub(crate) struct Shadows(Mutex<HashMap<(String, u64), Arc<ShadowStats>>>);

impl Shadows {
    pub fn stats(&self, model: &str, version: u64) -> Arc<ShadowStats> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry((model.to_string(), version)).or_default())
    }

    /// Every shadow's figures, by model.
    pub fn all(&self) -> Vec<(String, ShadowFigures)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, ShadowFigures)> = map
            .iter()
            .map(|((m, v), s)| (m.clone(), s.figures(*v)))
            .collect();
        out.sort_by(|a, b| (&a.0, a.1.version).cmp(&(&b.0, b.1.version)));
        out
    }
}

impl Runtime {
    /// The running figures of `model`'s shadows.
    pub fn shadow_figures(&self, model: &str) -> Vec<ShadowFigures> {
        self.shadows
            .all()
            .into_iter()
            .filter(|(m, _)| m == model)
            .map(|(_, f)| f)
            .collect()
    }

    /// Every model's shadow figures (for metrics).
    pub fn all_shadow_figures(&self) -> Vec<(String, ShadowFigures)> {
        self.shadows.all()
    }

    pub(crate) fn shadow_agreement(&self, model: &str, version: u64) -> Option<f64> {
        self.shadow_figures(model)
            .into_iter()
            .find(|f| f.version == version)
            .and_then(|f| f.agreement)
    }
}

/// Compares a shadow's answer with the primary's and counts it (see [`outputs_agree`]).
pub(crate) fn compare(
    stats: &ShadowStats,
    primary: &InferResponse,
    shadow: &InferResponse,
    tolerance: f64,
) -> bool {
    let same = outputs_agree(
        &primary.outputs,
        &shadow.outputs,
        tolerance,
        |name, diff| stats.diff(name).observe(diff),
    );
    let counter = if same {
        &stats.matched
    } else {
        &stats.mismatched
    };
    counter.fetch_add(1, Relaxed);
    same
}

/// Whether two answers agree: integer, BOOL and BYTES outputs must be equal; float outputs are
/// compared by each row's argmax when the answer has an integer or BYTES output (a label: the
/// floats are then scores), else within `tolerance`. Each float output's largest absolute
/// difference goes to `diff`. Shadow comparisons and `inferd audit replay` use this.
pub fn outputs_agree(
    primary: &[NamedTensor],
    other: &[NamedTensor],
    tolerance: f64,
    mut diff: impl FnMut(&str, f64),
) -> bool {
    let labelled = primary.iter().any(|o| !is_float(o.tensor.datatype()));
    let mut same = primary.len() == other.len();
    for p in primary {
        let Some(s) = other.iter().find(|s| s.name == p.name) else {
            same = false;
            continue;
        };
        let (a, b) = (&p.tensor, &s.tensor);
        if a.datatype() != b.datatype() || a.shape() != b.shape() {
            same = false;
            continue;
        }
        if !is_float(a.datatype()) {
            same &= a.contiguous() == b.contiguous();
            continue;
        }
        let (x, y) = (floats(a), floats(b));
        let max_diff = x
            .iter()
            .zip(&y)
            .map(|(u, v)| {
                if u.is_nan() && v.is_nan() {
                    0.0
                } else {
                    (u - v).abs()
                }
            })
            .fold(
                0.0f64,
                |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) },
            );
        diff(&p.name, max_diff);
        same &= if labelled {
            argmax_rows(&x, a.shape()) == argmax_rows(&y, b.shape())
        } else {
            max_diff <= tolerance
        };
    }
    same
}

fn is_float(dt: DataType) -> bool {
    matches!(
        dt,
        DataType::F16 | DataType::F32 | DataType::F64 | DataType::BF16
    )
}

fn floats(t: &Tensor) -> Vec<f64> {
    use inferd_core::TensorData as D;
    match t.data() {
        D::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
        D::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
        D::F32(v) => v.iter().map(|x| f64::from(*x)).collect(),
        D::F64(v) => v,
        _ => Vec::new(),
    }
}

/// The index of the largest value of each row (last dimension).
fn argmax_rows(values: &[f64], shape: &[usize]) -> Vec<usize> {
    let width = shape.last().copied().unwrap_or(1).max(1);
    values
        .chunks(width)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |best, (i, v)| {
                    if *v > best.1 { (i, *v) } else { best }
                })
                .0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferd_core::TensorData;

    fn response(label: i64, probs: [f32; 2]) -> InferResponse {
        InferResponse {
            model_name: "m".into(),
            model_version: 1,
            route: String::new(),
            outputs: vec![
                NamedTensor {
                    name: "label".into(),
                    tensor: Tensor::new(vec![1], TensorData::I64(vec![label])).unwrap(),
                },
                NamedTensor {
                    name: "probabilities".into(),
                    tensor: Tensor::new(vec![1, 2], TensorData::F32(probs.to_vec())).unwrap(),
                },
            ],
            decoupled: false,
            cached: false,
        }
    }

    #[test]
    fn labels_must_agree_and_scores_by_argmax() {
        let stats = ShadowStats::default();
        assert!(compare(
            &stats,
            &response(0, [0.9, 0.1]),
            &response(0, [0.7, 0.3]),
            1e-5
        ));
        assert!(!compare(
            &stats,
            &response(0, [0.9, 0.1]),
            &response(1, [0.9, 0.1]),
            1e-5
        ));
        assert!(!compare(
            &stats,
            &response(0, [0.9, 0.1]),
            &response(0, [0.2, 0.8]),
            1e-5
        ));
        assert_eq!(
            (stats.matched.load(Relaxed), stats.mismatched.load(Relaxed)),
            (1, 2)
        );
        let diffs = stats.figures(2).diffs;
        assert_eq!(diffs[0].0, "probabilities");
        assert_eq!(diffs[0].1.count, 3);
    }

    #[test]
    fn floats_alone_match_within_the_tolerance() {
        let out = |v: f32| InferResponse {
            model_name: "m".into(),
            model_version: 1,
            route: String::new(),
            outputs: vec![NamedTensor {
                name: "y".into(),
                tensor: Tensor::new(vec![1], TensorData::F32(vec![v])).unwrap(),
            }],
            decoupled: false,
            cached: false,
        };
        let stats = ShadowStats::default();
        assert!(compare(&stats, &out(1.0), &out(1.0 + 1e-7), 1e-5));
        assert!(!compare(&stats, &out(1.0), &out(1.1), 1e-5));
    }
}
