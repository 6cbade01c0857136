//! Triton's classification extension: an output requested with `classification: K` is answered
//! as its K best classes, per batch row: BYTES `"<score>:<index>[:<label>]"`, best first (ties
//! to the lower index), the score written as C++'s `std::to_string` writes it (`%f` for
//! floats), the label from the output's `label_filename`. K beyond the classes gives them all.

use std::collections::BTreeMap;

use inferd_core::{DataType, Tensor, TensorData};

use crate::{InferResponse, ModelSpec, RuntimeError};

fn numeric(datatype: DataType) -> bool {
    !matches!(datatype, DataType::Bytes | DataType::Bool)
}

/// Refuses what cannot be classified before the model runs.
pub(crate) fn check(
    spec: &ModelSpec,
    wanted: &BTreeMap<String, usize>,
) -> Result<(), RuntimeError> {
    for (name, k) in wanted {
        let fail = |why: String| {
            RuntimeError::InvalidInput(format!("classification of output '{name}': {why}"))
        };
        let output = spec
            .outputs
            .iter()
            .find(|o| &o.name == name)
            .ok_or_else(|| fail(format!("model '{}' has no such output", spec.name)))?;
        if *k == 0 {
            return Err(fail("the class count must be at least 1".into()));
        }
        if !numeric(output.datatype) {
            return Err(fail(format!(
                "it is {}, and only numbers have classes",
                output.datatype
            )));
        }
    }
    Ok(())
}

/// Replaces each classified output by its classes.
pub(crate) fn apply(
    mut response: InferResponse,
    wanted: &BTreeMap<String, usize>,
    spec: &ModelSpec,
) -> Result<InferResponse, RuntimeError> {
    for output in &mut response.outputs {
        let Some(k) = wanted.get(&output.name) else {
            continue;
        };
        let labels = spec.labels.get(&output.name).map(|l| &l[..]);
        output.tensor =
            classify(&output.tensor, *k, spec.max_batch_size > 0, labels).map_err(|why| {
                RuntimeError::InvalidInput(format!(
                    "classification of output '{}': {why}",
                    output.name
                ))
            })?;
    }
    Ok(response)
}

/// The elements as numbers to rank by, and for integer types their exact values (written as
/// they are; floats are written `%f`).
fn ranked(data: TensorData) -> Result<(Vec<f64>, Option<Vec<i128>>), String> {
    fn ints<T: Copy + Into<i128>>(v: Vec<T>) -> (Vec<f64>, Option<Vec<i128>>) {
        let exact: Vec<i128> = v.into_iter().map(Into::into).collect();
        (exact.iter().map(|x| *x as f64).collect(), Some(exact))
    }
    fn floats<T: Copy + Into<f64>>(v: Vec<T>) -> (Vec<f64>, Option<Vec<i128>>) {
        (v.into_iter().map(Into::into).collect(), None)
    }
    Ok(match data {
        TensorData::U8(v) => ints(v),
        TensorData::U16(v) => ints(v),
        TensorData::U32(v) => ints(v),
        TensorData::U64(v) => ints(v),
        TensorData::I8(v) => ints(v),
        TensorData::I16(v) => ints(v),
        TensorData::I32(v) => ints(v),
        TensorData::I64(v) => ints(v),
        TensorData::F16(v) => floats(v),
        TensorData::BF16(v) => floats(v),
        TensorData::F32(v) => floats(v),
        TensorData::F64(v) => (v, None),
        TensorData::Bool(_) | TensorData::Bytes(_) => {
            return Err("only numbers have classes".into());
        }
    })
}

fn classify(
    tensor: &Tensor,
    k: usize,
    batched: bool,
    labels: Option<&[String]>,
) -> Result<Tensor, String> {
    let (values, exact) = ranked(tensor.data())?;
    // Only the kept classes are written out.
    let text = |i: usize| match &exact {
        Some(ints) => ints[i].to_string(),
        None => format!("{:.6}", values[i]),
    };
    let rows = if batched {
        tensor.shape().first().copied().unwrap_or(1)
    } else {
        1
    };
    let classes = values.len().checked_div(rows).unwrap_or(0);
    let kept = k.min(classes);
    let mut out = Vec::with_capacity(rows * kept);
    for row in 0..rows {
        let scores = &values[row * classes..(row + 1) * classes];
        let mut order: Vec<usize> = (0..classes).collect();
        // Stable: ties keep the lower index first; NaN ranks last.
        order.sort_by(|&a, &b| {
            scores[b]
                .partial_cmp(&scores[a])
                .unwrap_or_else(|| scores[a].is_nan().cmp(&scores[b].is_nan()))
        });
        for &i in order.iter().take(kept) {
            let mut entry = format!("{}:{i}", text(row * classes + i));
            if let Some(label) = labels.and_then(|l| l.get(i)) {
                entry.push(':');
                entry.push_str(label);
            }
            out.push(entry.into_bytes());
        }
    }
    let shape = if batched {
        vec![rows, kept]
    } else {
        vec![kept]
    };
    Tensor::new(shape, TensorData::Bytes(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_best_first_with_tritons_number_format_and_labels() {
        let t = Tensor::new(
            vec![2, 3],
            TensorData::F32(vec![0.1, 0.98159295, 0.5, 0.2, 0.2, 0.6]),
        )
        .unwrap();
        let labels = [
            "setosa".to_string(),
            "versicolor".into(),
            "virginica".into(),
        ];
        let got = classify(&t, 2, true, Some(&labels)).unwrap();
        assert_eq!(got.shape(), &[2, 2]);
        let text: Vec<String> = got
            .byte_elements()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        assert_eq!(
            text,
            [
                "0.981593:1:versicolor",
                "0.500000:2:virginica",
                "0.600000:2:virginica",
                "0.200000:0:setosa"
            ]
        );
        let ints = Tensor::new(vec![3], TensorData::I64(vec![3, 9, 1])).unwrap();
        let got = classify(&ints, 5, false, None).unwrap();
        let text: Vec<&[u8]> = got.byte_elements().collect();
        assert_eq!(text, [&b"9:1"[..], b"3:0", b"1:2"]);
    }
}
