//! Tensor elements as JSON: `data` arrays in requests (flat or nested, row-major) and responses.

use half::{bf16, f16};
use inferd_core::{DataType, TensorData};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::Value;

/// Flattens `data` (any nesting) into elements of `datatype`.
pub fn decode(datatype: DataType, data: &Value) -> Result<TensorData, String> {
    fn flat<T>(
        v: &Value,
        dt: DataType,
        conv: &impl Fn(&Value) -> Option<T>,
        out: &mut Vec<T>,
    ) -> Result<(), String> {
        match v {
            Value::Array(items) => items.iter().try_for_each(|x| flat(x, dt, conv, out)),
            leaf => {
                let e = conv(leaf).ok_or_else(|| {
                    format!("element {} ({leaf}) is not a valid {dt} value", out.len())
                })?;
                out.push(e);
                Ok(())
            }
        }
    }
    fn all<T>(
        v: &Value,
        dt: DataType,
        conv: impl Fn(&Value) -> Option<T>,
    ) -> Result<Vec<T>, String> {
        let mut out = Vec::new();
        flat(v, dt, &conv, &mut out)?;
        Ok(out)
    }
    fn uint<T: TryFrom<u64>>(v: &Value) -> Option<T> {
        v.as_u64().and_then(|x| T::try_from(x).ok())
    }
    fn int<T: TryFrom<i64>>(v: &Value) -> Option<T> {
        v.as_i64().and_then(|x| T::try_from(x).ok())
    }
    let dt = datatype;
    Ok(match dt {
        DataType::Bool => TensorData::Bool(all(data, dt, Value::as_bool)?),
        DataType::U8 => TensorData::U8(all(data, dt, uint)?),
        DataType::U16 => TensorData::U16(all(data, dt, uint)?),
        DataType::U32 => TensorData::U32(all(data, dt, uint)?),
        DataType::U64 => TensorData::U64(all(data, dt, Value::as_u64)?),
        DataType::I8 => TensorData::I8(all(data, dt, int)?),
        DataType::I16 => TensorData::I16(all(data, dt, int)?),
        DataType::I32 => TensorData::I32(all(data, dt, int)?),
        DataType::I64 => TensorData::I64(all(data, dt, Value::as_i64)?),
        DataType::F16 => TensorData::F16(all(data, dt, |v| v.as_f64().map(f16::from_f64))?),
        DataType::F32 => TensorData::F32(all(data, dt, |v| v.as_f64().map(|x| x as f32))?),
        DataType::F64 => TensorData::F64(all(data, dt, Value::as_f64)?),
        DataType::BF16 => TensorData::BF16(all(data, dt, |v| v.as_f64().map(bf16::from_f64))?),
        DataType::Bytes => TensorData::Bytes(all(data, dt, |v| {
            v.as_str().map(|s| s.as_bytes().to_vec())
        })?),
    })
}

/// Serializes elements as a flat JSON array (BYTES as text, half floats widened).
pub struct JsonData<'a>(pub &'a TensorData);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fn seq<S: Serializer, T: Serialize>(
            s: S,
            items: impl ExactSizeIterator<Item = T>,
        ) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(items.len()))?;
            for item in items {
                seq.serialize_element(&item)?;
            }
            seq.end()
        }
        match self.0 {
            TensorData::Bool(v) => v.serialize(s),
            TensorData::U8(v) => v.serialize(s),
            TensorData::U16(v) => v.serialize(s),
            TensorData::U32(v) => v.serialize(s),
            TensorData::U64(v) => v.serialize(s),
            TensorData::I8(v) => v.serialize(s),
            TensorData::I16(v) => v.serialize(s),
            TensorData::I32(v) => v.serialize(s),
            TensorData::I64(v) => v.serialize(s),
            TensorData::F16(v) => seq(s, v.iter().map(|x| x.to_f32())),
            TensorData::F32(v) => v.serialize(s),
            TensorData::F64(v) => v.serialize(s),
            TensorData::BF16(v) => seq(s, v.iter().map(|x| x.to_f32())),
            TensorData::Bytes(v) => seq(s, v.iter().map(|b| String::from_utf8_lossy(b))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_and_flat_data_decode_alike() {
        let nested = decode(DataType::F32, &json!([[1, 2.5], [3, 4]])).unwrap();
        let flat = decode(DataType::F32, &json!([1, 2.5, 3, 4])).unwrap();
        assert_eq!(nested, flat);
        assert_eq!(flat, TensorData::F32(vec![1.0, 2.5, 3.0, 4.0]));
    }

    #[test]
    fn every_datatype_decodes() {
        assert_eq!(
            decode(DataType::Bool, &json!([true, false])).unwrap(),
            TensorData::Bool(vec![true, false])
        );
        assert_eq!(
            decode(DataType::U8, &json!([255])).unwrap(),
            TensorData::U8(vec![255])
        );
        assert_eq!(
            decode(DataType::I64, &json!([-3])).unwrap(),
            TensorData::I64(vec![-3])
        );
        assert_eq!(
            decode(DataType::Bytes, &json!(["hi"])).unwrap(),
            TensorData::Bytes(vec![b"hi".to_vec()])
        );
        assert_eq!(
            decode(DataType::F16, &json!([0.5])).unwrap(),
            TensorData::F16(vec![f16::from_f32(0.5)])
        );
    }

    #[test]
    fn wrong_elements_are_named() {
        let err = decode(DataType::I32, &json!([1, 2.5])).unwrap_err();
        assert!(
            err.contains("element 1 (2.5) is not a valid INT32"),
            "{err}"
        );
        let err = decode(DataType::U8, &json!([256])).unwrap_err();
        assert!(err.contains("UINT8"), "{err}");
        let err = decode(DataType::F32, &json!(["x"])).unwrap_err();
        assert!(err.contains("FP32"), "{err}");
    }

    #[test]
    fn encodes_flat() {
        let text =
            serde_json::to_string(&JsonData(&TensorData::Bytes(vec![b"a".to_vec()]))).unwrap();
        assert_eq!(text, r#"["a"]"#);
        let text = serde_json::to_string(&JsonData(&TensorData::F32(vec![0.5, 1.0]))).unwrap();
        assert_eq!(text, "[0.5,1.0]");
    }
}
