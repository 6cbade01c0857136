//! Score post-transforms of the ONNX-ML classifiers and regressors, with onnxruntime's
//! numerics (its ErfInv approximation for PROBIT, SOFTMAX_ZERO skipping zero scores).

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    pub fn parse(s: &str) -> tract_hir::internal::TractResult<PostTransform> {
        Ok(match s {
            "NONE" => PostTransform::None,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX" => PostTransform::Softmax,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            other => tract_hir::internal::bail!("unknown post_transform {other}"),
        })
    }

    /// Transforms one row of scores in place.
    pub fn apply(self, row: &mut [f32]) {
        match self {
            PostTransform::None => {}
            PostTransform::Logistic => row.iter_mut().for_each(|v| *v = logistic(*v)),
            PostTransform::Probit => row.iter_mut().for_each(|v| *v = probit(*v)),
            PostTransform::Softmax => softmax(row, false),
            PostTransform::SoftmaxZero => softmax(row, true),
        }
    }
}

pub(crate) fn logistic(v: f32) -> f32 {
    let e = 1.0 / (1.0 + (-v.abs()).exp());
    if v < 0.0 { 1.0 - e } else { e }
}

/// sqrt(2) * erfinv(2v - 1), with the single-precision approximation onnxruntime uses.
pub(crate) fn probit(v: f32) -> f32 {
    let x = 2.0 * v - 1.0;
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let ln = ((1.0 - x) * (1.0 + x)).ln();
    let a = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * ln;
    let b = ln / 0.147;
    std::f32::consts::SQRT_2 * sign * (-a + (a * a - b).sqrt()).sqrt()
}

/// Softmax of a row; with `skip_zeros`, scores within 1e-7 of zero stay (almost) zero.
fn softmax(row: &mut [f32], skip_zeros: bool) {
    let max = row.iter().copied().fold(f32::MIN, f32::max);
    let scale_zero = (-max).exp();
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        if skip_zeros && v.abs() <= 1e-7 {
            *v *= scale_zero;
        } else {
            *v = (*v - max).exp();
            sum += *v;
        }
    }
    row.iter_mut().for_each(|v| *v /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms() {
        assert!((logistic(0.0) - 0.5).abs() < 1e-7);
        assert!((logistic(-30.0)).abs() < 1e-7);
        let mut row = [1.0, 2.0, 3.0];
        PostTransform::Softmax.apply(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6 && row[2] > row[1]);
        let mut row = [0.0, 1.0];
        PostTransform::SoftmaxZero.apply(&mut row);
        assert_eq!(row[0], 0.0);
        assert!((probit(0.5)).abs() < 1e-6);
        assert!((probit(0.975) - 1.96).abs() < 0.01);
    }
}
