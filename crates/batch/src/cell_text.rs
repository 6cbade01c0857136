//! Output cells as text, written straight into the output buffer: numbers through itoa and
//! ryu (a few times faster than `Display`, which was the largest cost of writing CSV), text
//! quoted as CSV or JSON needs.

use std::fmt::Display;
use std::io::Write;

use inferd_core::TensorData;

/// Appends element `i` of `data`: CSV (`json` false: strings quoted where needed, NaN as
/// empty) or JSON (strings quoted, NaN and infinities as null). Floats print in their own
/// width's shortest form (an FP32 0.95914 stays 0.95914), without exponents.
pub fn write_element(out: &mut Vec<u8>, data: &TensorData, i: usize, json: bool) {
    match data {
        TensorData::Bool(v) => out.extend_from_slice(if v[i] { b"true" } else { b"false" }),
        TensorData::U8(v) => integer(out, v[i]),
        TensorData::U16(v) => integer(out, v[i]),
        TensorData::U32(v) => integer(out, v[i]),
        TensorData::U64(v) => integer(out, v[i]),
        TensorData::I8(v) => integer(out, v[i]),
        TensorData::I16(v) => integer(out, v[i]),
        TensorData::I32(v) => integer(out, v[i]),
        TensorData::I64(v) => integer(out, v[i]),
        TensorData::F16(v) if v[i].is_finite() => {
            let _ = write!(out, "{}", v[i]);
        }
        TensorData::BF16(v) if v[i].is_finite() => {
            let _ = write!(out, "{}", v[i]);
        }
        TensorData::F32(v) if v[i].is_finite() => shortest(out, v[i]),
        TensorData::F64(v) if v[i].is_finite() => shortest(out, v[i]),
        TensorData::F16(_) | TensorData::BF16(_) | TensorData::F32(_) | TensorData::F64(_) => {
            if json {
                out.extend_from_slice(b"null");
            }
        }
        TensorData::Bytes(v) => {
            let text = String::from_utf8_lossy(&v[i]);
            if json {
                json_text(out, &text);
            } else {
                csv_text(out, text.as_bytes());
            }
        }
    }
}

pub fn integer(out: &mut Vec<u8>, x: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(x).as_bytes());
}

/// A finite float in the form `Display` prints: the shortest digits that read back as `x`
/// (ryu's, without its ".0" on whole numbers); ryu's exponent form (below 1e-5 or from 1e16)
/// is rare enough to leave to `Display`.
fn shortest<F: ryu::Float + Display>(out: &mut Vec<u8>, x: F) {
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(x);
    if text.contains('e') {
        let _ = write!(out, "{x}");
    } else {
        out.extend_from_slice(text.strip_suffix(".0").unwrap_or(text).as_bytes());
    }
}

/// A CSV field: quoted when it holds a delimiter, a quote or a line break (quotes doubled),
/// as the csv crate's writer does.
pub fn csv_text(out: &mut Vec<u8>, text: &[u8]) {
    if !text
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        out.extend_from_slice(text);
        return;
    }
    out.push(b'"');
    for b in text {
        if *b == b'"' {
            out.push(b'"');
        }
        out.push(*b);
    }
    out.push(b'"');
}

/// A JSON string.
pub fn json_text(out: &mut Vec<u8>, text: &str) {
    // Writing to a Vec cannot fail, and a str always serializes.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(data: TensorData, json: bool) -> Vec<String> {
        let n = data.len();
        (0..n)
            .map(|i| {
                let mut out = Vec::new();
                write_element(&mut out, &data, i, json);
                String::from_utf8(out).unwrap()
            })
            .collect()
    }

    #[test]
    fn floats_print_as_display_does() {
        // A fixed pseudo-random walk over bit patterns, plus the edges.
        let mut bits = 0x9E37_79B9_7F4A_7C15u64;
        let mut f32s = vec![
            0.0f32, -0.0, 1.0, -1.0, 0.1, 1e-5, 9.99e-6, 1e15, 1e16, 3.4e38, 1e-45,
        ];
        let mut f64s = vec![
            0.0f64, -0.0, 1.0, 0.1, 1e-5, 9.99e-6, 1e15, 1e16, 1.7e308, 5e-324,
        ];
        for _ in 0..100_000 {
            bits ^= bits << 13;
            bits ^= bits >> 7;
            bits ^= bits << 17;
            f32s.push(f32::from_bits(bits as u32));
            f64s.push(f64::from_bits(bits));
            // Values in the range of model outputs, where the digits matter most.
            f32s.push((bits % 2_000_000) as f32 / 1_000_000.0 - 1.0);
        }
        f32s.retain(|x| x.is_finite());
        f64s.retain(|x| x.is_finite());
        // The same value in as many characters as `Display`: where two shortest forms are
        // equally near (312985.125 as FP32), ryu may round the last digit the other way.
        fn check<F: ryu::Float + Display + std::str::FromStr + PartialEq + std::fmt::LowerExp>(
            x: F,
        ) {
            let mut out = Vec::new();
            shortest(&mut out, x);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.len(), x.to_string().len(), "{x:e}: {text}");
            assert!(text.parse::<F>().ok() == Some(x), "{x:e}: {text}");
        }
        f32s.into_iter().for_each(check);
        f64s.into_iter().for_each(check);
        let mut out = Vec::new();
        shortest(&mut out, 0.95914f32);
        assert_eq!(out, b"0.95914");
    }

    #[test]
    fn non_finite_floats_are_empty_in_csv_and_null_in_json() {
        let data = TensorData::F32(vec![f32::NAN, f32::INFINITY, 0.5]);
        assert_eq!(text(data.clone(), false), ["", "", "0.5"]);
        assert_eq!(text(data, true), ["null", "null", "0.5"]);
    }

    #[test]
    fn text_is_quoted_where_csv_and_json_need() {
        let data = TensorData::Bytes(vec![
            b"plain".to_vec(),
            b"a,b".to_vec(),
            b"say \"hi\"".to_vec(),
            b"two\nlines".to_vec(),
        ]);
        assert_eq!(
            text(data.clone(), false),
            ["plain", "\"a,b\"", "\"say \"\"hi\"\"\"", "\"two\nlines\""]
        );
        assert_eq!(
            text(data, true),
            [
                "\"plain\"",
                "\"a,b\"",
                "\"say \\\"hi\\\"\"",
                "\"two\\nlines\""
            ]
        );
    }

    #[test]
    fn integers_and_booleans() {
        assert_eq!(
            text(TensorData::I64(vec![-3, 0, i64::MAX]), false),
            ["-3", "0", "9223372036854775807"]
        );
        assert_eq!(
            text(TensorData::Bool(vec![true, false]), true),
            ["true", "false"]
        );
    }
}
