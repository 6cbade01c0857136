//! `SVMClassifier` and `SVMRegressor` (ai.onnx.ml), as libsvm/liblinear models export them
//! (SVC, NuSVC, SVR, NuSVR, OneClassSVM): kernel against the support vectors, one-vs-one votes,
//! and Platt-scaled pairwise probabilities coupled into class probabilities.

use tract_hir::internal::*;
use tract_hir::tract_core::ndarray::{ArrayView1, ArrayView2};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;

use super::Floats;
use super::post_transform::{PostTransform, logistic};
use super::row_kernel::{RowKernel, RowOp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KernelType {
    Linear,
    Poly,
    Rbf,
    Sigmoid,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Kernel {
    kind: KernelType,
    /// gamma, coef0, degree
    params: Floats,
}

impl Kernel {
    fn parse(node: &NodeProto) -> TractResult<Kernel> {
        let kind = match node
            .get_attr_opt::<&str>("kernel_type")?
            .unwrap_or("LINEAR")
        {
            "LINEAR" => KernelType::Linear,
            "POLY" => KernelType::Poly,
            "RBF" => KernelType::Rbf,
            "SIGMOID" => KernelType::Sigmoid,
            other => bail!("unknown kernel_type {other}"),
        };
        let mut params = node
            .get_attr_opt_vec::<f32>("kernel_params")?
            .unwrap_or_default();
        params.resize(3, 0.0);
        Ok(Kernel {
            kind,
            params: Floats(params),
        })
    }

    fn apply(&self, x: ArrayView1<f32>, v: &[f32]) -> f32 {
        let [gamma, coef0, degree] = [self.params.0[0], self.params.0[1], self.params.0[2]];
        let dot = || x.iter().zip(v).map(|(a, b)| a * b).sum::<f32>();
        match self.kind {
            KernelType::Rbf => {
                (-gamma * x.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum::<f32>()).exp()
            }
            KernelType::Linear => dot(),
            KernelType::Poly => (gamma * dot() + coef0).powf(degree),
            KernelType::Sigmoid => (gamma * dot() + coef0).tanh(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Labels {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

impl Labels {
    fn len(&self) -> usize {
        match self {
            Labels::Ints(v) => v.len(),
            Labels::Strings(v) => v.len(),
        }
    }

    fn datum_type(&self) -> DatumType {
        match self {
            Labels::Ints(_) => DatumType::I64,
            Labels::Strings(_) => DatumType::String,
        }
    }

    fn pick(&self, classes: &[usize]) -> TractResult<Tensor> {
        Ok(match self {
            Labels::Ints(v) => tensor1(&classes.iter().map(|c| v[*c]).collect::<Vec<_>>()),
            Labels::Strings(v) => {
                tensor1(&classes.iter().map(|c| v[*c].clone()).collect::<Vec<_>>())
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SvmClassifier {
    kernel: Kernel,
    labels: Labels,
    /// Support vectors per class; empty for a linear (liblinear) model.
    vectors_per_class: Vec<usize>,
    support_vectors: Floats,
    coefficients: Floats,
    rho: Floats,
    prob_a: Floats,
    prob_b: Floats,
    post_transform: PostTransform,
    n_features: usize,
}

pub fn build_classifier(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let labels = match (
        node.get_attr_opt_vec::<i64>("classlabels_ints")?,
        node.get_attr_opt_tvec::<&str>("classlabels_strings")?,
    ) {
        (Some(v), None) if !v.is_empty() => Labels::Ints(v),
        (None, Some(v)) if !v.is_empty() => {
            Labels::Strings(v.iter().map(|s| s.to_string()).collect())
        }
        _ => bail!("SVMClassifier needs one of classlabels_ints and classlabels_strings"),
    };
    let floats = |name: &str| -> TractResult<Floats> {
        Ok(Floats(
            node.get_attr_opt_vec::<f32>(name)?.unwrap_or_default(),
        ))
    };
    let vectors_per_class: Vec<usize> = node
        .get_attr_opt_vec::<i64>("vectors_per_class")?
        .unwrap_or_default()
        .into_iter()
        .map(|v| usize::try_from(v).map_err(|_| format_err!("negative vectors_per_class")))
        .collect::<TractResult<_>>()?;
    let (support_vectors, coefficients, rho) = (
        floats("support_vectors")?,
        floats("coefficients")?,
        floats("rho")?,
    );
    let (prob_a, prob_b) = (floats("prob_a")?, floats("prob_b")?);
    let classes = labels.len();
    let pairs = classes * (classes - 1) / 2;
    ensure!(
        prob_a.0.len() == prob_b.0.len(),
        "prob_a and prob_b differ in length"
    );
    let n_vectors: usize = vectors_per_class.iter().sum();
    let n_features = if n_vectors > 0 {
        ensure!(
            vectors_per_class.len() == classes,
            "vectors_per_class has {} entries for {classes} classes",
            vectors_per_class.len()
        );
        ensure!(
            support_vectors.0.len().is_multiple_of(n_vectors),
            "support_vectors is not a whole number of vectors"
        );
        ensure!(
            coefficients.0.len() >= (classes - 1) * n_vectors,
            "coefficients are too few for the support vectors"
        );
        ensure!(
            rho.0.len() >= pairs,
            "rho needs one value per pair of classes"
        );
        ensure!(
            prob_a.0.is_empty() || prob_a.0.len() >= pairs,
            "prob_a needs one value per pair of classes"
        );
        support_vectors.0.len() / n_vectors
    } else {
        ensure!(
            !coefficients.0.is_empty() && coefficients.0.len().is_multiple_of(classes),
            "linear coefficients do not match the classes"
        );
        ensure!(!rho.0.is_empty(), "rho is empty");
        coefficients.0.len() / classes
    };
    let post_transform = PostTransform::parse(
        node.get_attr_opt::<&str>("post_transform")?
            .unwrap_or("NONE"),
    )?;
    if n_vectors > 0 && prob_a.0.is_empty() && classes == 2 && post_transform != PostTransform::None
    {
        bail!("a binary SVMClassifier without probabilities supports post_transform NONE only");
    }
    let op = SvmClassifier {
        kernel: Kernel::parse(node)?,
        labels,
        vectors_per_class,
        support_vectors,
        coefficients,
        rho,
        prob_a,
        prob_b,
        post_transform,
        n_features,
    };
    Ok((expand(RowOp(op)), vec![]))
}

impl SvmClassifier {
    fn classes(&self) -> usize {
        self.labels.len()
    }

    fn is_linear(&self) -> bool {
        self.vectors_per_class.is_empty()
    }

    fn score_width(&self) -> usize {
        let c = self.classes();
        match (self.is_linear(), self.prob_a.0.is_empty()) {
            (false, true) if c > 2 => c * (c - 1) / 2,
            (false, true) => 2,
            _ => c,
        }
    }

    /// One-vs-one decision values (pair order 01, 02, .., 12, ..) and the class with most votes.
    fn one_vs_one(&self, row: ArrayView1<f32>) -> (Vec<f32>, usize) {
        let (c, f) = (self.classes(), self.n_features);
        let n_vectors: usize = self.vectors_per_class.iter().sum();
        let kernels: Vec<f32> = self
            .support_vectors
            .0
            .chunks_exact(f)
            .map(|sv| self.kernel.apply(row, sv))
            .collect();
        let starts: Vec<usize> = self
            .vectors_per_class
            .iter()
            .scan(0, |acc, n| {
                let s = *acc;
                *acc += n;
                Some(s)
            })
            .collect();
        let coef = &self.coefficients.0;
        let mut votes = vec![0usize; c];
        let mut decisions = Vec::with_capacity(c * (c - 1) / 2);
        for i in 0..c {
            for j in i + 1..c {
                let part = |class: usize, row: usize| -> f64 {
                    let (s, n) = (starts[class], self.vectors_per_class[class]);
                    (0..n)
                        .map(|m| coef[row * n_vectors + s + m] as f64 * kernels[s + m] as f64)
                        .sum()
                };
                let sum = part(i, j - 1) + part(j, i) + self.rho.0[decisions.len()] as f64;
                votes[if sum > 0.0 { i } else { j }] += 1;
                decisions.push(sum as f32);
            }
        }
        // The first class with the most votes wins ties.
        let winner = (0..c).fold(0, |best, k| if votes[k] > votes[best] { k } else { best });
        (decisions, winner)
    }

    /// Pairwise Platt probabilities coupled into one probability per class (libsvm's method).
    fn probabilities(&self, decisions: &[f32]) -> Vec<f32> {
        let c = self.classes();
        let mut r = vec![0f32; c * c];
        let mut ix = 0;
        for i in 0..c {
            for j in i + 1..c {
                let p = (1.0 - logistic(decisions[ix] * self.prob_a.0[ix] + self.prob_b.0[ix]))
                    .clamp(1e-7, 1.0 - 1e-7);
                r[i * c + j] = p;
                r[j * c + i] = 1.0 - p;
                ix += 1;
            }
        }
        couple(c, &r)
    }
}

/// Solves min_p pᵀQp subject to Σp = 1 (Wu, Lin and Weng 2004), as libsvm and onnxruntime do.
fn couple(c: usize, r: &[f32]) -> Vec<f32> {
    let mut q = vec![0f32; c * c];
    let mut p = vec![1.0 / c as f32; c];
    for i in 0..c {
        for j in 0..c {
            if j == i {
                continue;
            }
            q[i * c + i] += r[j * c + i] * r[j * c + i];
            q[i * c + j] = if j < i {
                q[j * c + i]
            } else {
                -r[j * c + i] * r[i * c + j]
            };
        }
    }
    let eps = 0.005 / c as f32;
    let mut qp = vec![0f32; c];
    for _ in 0..100 {
        let mut pqp = 0f32;
        for i in 0..c {
            qp[i] = (0..c).map(|j| q[i * c + j] * p[j]).sum();
            pqp += p[i] * qp[i];
        }
        if qp.iter().map(|v| (v - pqp).abs()).fold(0.0, f32::max) < eps {
            break;
        }
        for i in 0..c {
            let diff = (pqp - qp[i]) / q[i * c + i];
            p[i] += diff;
            pqp = (pqp + diff * (diff * q[i * c + i] + 2.0 * qp[i])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..c {
                qp[j] = (qp[j] + diff * q[i * c + j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
    p
}

impl RowKernel for SvmClassifier {
    const NAME: &'static str = "SVMClassifier";

    fn outputs(&self) -> TVec<(DatumType, Option<usize>)> {
        tvec![
            (self.labels.datum_type(), None),
            (DatumType::F32, Some(self.score_width()))
        ]
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn run(&self, x: ArrayView2<f32>) -> TractResult<TVec<Tensor>> {
        let width = self.score_width();
        let mut scores = Vec::with_capacity(x.nrows() * width);
        let mut winners = Vec::with_capacity(x.nrows());
        for row in x.rows() {
            let (mut s, winner) = if self.is_linear() {
                let s: Vec<f32> = self
                    .coefficients
                    .0
                    .chunks_exact(self.n_features)
                    .map(|w| row.iter().zip(w).map(|(a, b)| a * b).sum::<f32>() + self.rho.0[0])
                    .collect();
                let winner = (0..s.len()).fold(0, |best, k| if s[k] > s[best] { k } else { best });
                (s, winner)
            } else {
                let (decisions, winner) = self.one_vs_one(row);
                match (self.prob_a.0.is_empty(), self.classes()) {
                    (false, _) => (self.probabilities(&decisions), winner),
                    // Binary decision value d answered as [-d, d].
                    (true, 2) => (vec![-decisions[0], decisions[0]], winner),
                    (true, _) => (decisions, winner),
                }
            };
            // (A binary model without probabilities only loads with post_transform NONE.)
            self.post_transform.apply(&mut s);
            scores.extend(s);
            winners.push(winner);
        }
        let scores =
            tract_hir::tract_core::ndarray::Array2::from_shape_vec((x.nrows(), width), scores)?;
        Ok(tvec![self.labels.pick(&winners)?, scores.into_tensor()])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SvmRegressor {
    kernel: Kernel,
    support_vectors: Floats,
    coefficients: Floats,
    rho: f32bits,
    one_class: bool,
    post_transform: PostTransform,
    n_features: usize,
}

/// An f32 that hashes (op state must).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq)]
struct f32bits(f32);

impl Eq for f32bits {}

impl std::hash::Hash for f32bits {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state)
    }
}

pub fn build_regressor(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let support_vectors = Floats(
        node.get_attr_opt_vec::<f32>("support_vectors")?
            .unwrap_or_default(),
    );
    let coefficients = Floats(node.get_attr_vec::<f32>("coefficients")?);
    let rho = node
        .get_attr_vec::<f32>("rho")?
        .first()
        .copied()
        .unwrap_or(0.0);
    let n_supports = node.get_attr_opt::<i64>("n_supports")?.unwrap_or(0) as usize;
    let n_features = if n_supports > 0 {
        ensure!(
            support_vectors.0.len().is_multiple_of(n_supports),
            "support_vectors is not a whole number of vectors"
        );
        ensure!(
            coefficients.0.len() >= n_supports,
            "one coefficient per support vector is needed"
        );
        support_vectors.0.len() / n_supports
    } else {
        ensure!(!coefficients.0.is_empty(), "coefficients are empty");
        coefficients.0.len()
    };
    let op = SvmRegressor {
        kernel: Kernel::parse(node)?,
        support_vectors,
        coefficients,
        rho: f32bits(rho),
        one_class: node.get_attr_opt::<i64>("one_class")?.unwrap_or(0) != 0,
        post_transform: PostTransform::parse(
            node.get_attr_opt::<&str>("post_transform")?
                .unwrap_or("NONE"),
        )?,
        n_features,
    };
    Ok((expand(RowOp(op)), vec![]))
}

impl RowKernel for SvmRegressor {
    const NAME: &'static str = "SVMRegressor";

    fn outputs(&self) -> TVec<(DatumType, Option<usize>)> {
        tvec![(DatumType::F32, Some(1))]
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn run(&self, x: ArrayView2<f32>) -> TractResult<TVec<Tensor>> {
        let mut out = Vec::with_capacity(x.nrows());
        for row in x.rows() {
            let score = if self.support_vectors.0.is_empty() {
                row.iter()
                    .zip(&self.coefficients.0)
                    .map(|(a, b)| a * b)
                    .sum::<f32>()
            } else {
                self.support_vectors
                    .0
                    .chunks_exact(self.n_features)
                    .zip(&self.coefficients.0)
                    .map(|(sv, c)| c * self.kernel.apply(row, sv))
                    .sum::<f32>()
            } + self.rho.0;
            let mut score = [if self.one_class {
                if score > 0.0 { 1.0 } else { -1.0 }
            } else {
                score
            }];
            self.post_transform.apply(&mut score);
            out.push(score[0]);
        }
        Ok(tvec![
            tract_hir::tract_core::ndarray::Array2::from_shape_vec((x.nrows(), 1), out)?
                .into_tensor()
        ])
    }
}
