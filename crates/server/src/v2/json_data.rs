//! Tensor elements as JSON: `data` arrays in requests (flat or nested, row-major), decoded
//! straight into typed elements without building a JSON tree, and `data` in responses.

use std::fmt;

use half::{bf16, f16};
use inferd_core::{DataType, Tensor, TensorData};
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::value::RawValue;

/// One JSON leaf.
#[derive(Clone, Copy)]
enum Leaf<'a> {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(&'a str),
    Null,
}

impl fmt::Display for Leaf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leaf::Bool(b) => write!(f, "{b}"),
            Leaf::I64(v) => write!(f, "{v}"),
            Leaf::U64(v) => write!(f, "{v}"),
            Leaf::F64(v) => write!(f, "{v}"),
            Leaf::Str(s) => write!(f, "{s:?}"),
            Leaf::Null => write!(f, "null"),
        }
    }
}

impl Leaf<'_> {
    fn as_f64(self) -> Option<f64> {
        match self {
            Leaf::I64(v) => Some(v as f64),
            Leaf::U64(v) => Some(v as f64),
            Leaf::F64(v) => Some(v),
            _ => None,
        }
    }

    fn as_i64(self) -> Option<i64> {
        match self {
            Leaf::I64(v) => Some(v),
            Leaf::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    fn as_u64(self) -> Option<u64> {
        match self {
            Leaf::I64(v) => u64::try_from(v).ok(),
            Leaf::U64(v) => Some(v),
            _ => None,
        }
    }
}

/// Appends every leaf of a (nested) array to `out`, converted by `convert`.
struct Flatten<'o, T, C> {
    out: &'o mut Vec<T>,
    convert: &'o C,
    datatype: DataType,
}

impl<T, C: Fn(Leaf<'_>) -> Option<T>> Flatten<'_, T, C> {
    fn leaf<E: serde::de::Error>(&mut self, leaf: Leaf<'_>) -> Result<(), E> {
        match (self.convert)(leaf) {
            Some(v) => {
                self.out.push(v);
                Ok(())
            }
            None => Err(E::custom(format!(
                "element {} ({leaf}) is not a valid {} value",
                self.out.len(),
                self.datatype
            ))),
        }
    }
}

impl<'de, T, C: Fn(Leaf<'_>) -> Option<T>> DeserializeSeed<'de> for &mut Flatten<'_, T, C> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T, C: Fn(Leaf<'_>) -> Option<T>> Visitor<'de> for &mut Flatten<'_, T, C> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {} values", self.datatype)
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.leaf(Leaf::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.leaf(Leaf::I64(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.leaf(Leaf::U64(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.leaf(Leaf::F64(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.leaf(Leaf::Str(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.leaf(Leaf::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some(n) = seq.size_hint() {
            self.out.reserve(n);
        }
        while seq.next_element_seed(&mut *self)?.is_some() {}
        Ok(())
    }
}

fn all<T>(
    raw: &RawValue,
    dt: DataType,
    convert: impl Fn(Leaf<'_>) -> Option<T>,
) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    let mut flatten = Flatten {
        out: &mut out,
        convert: &convert,
        datatype: dt,
    };
    let mut de = serde_json::Deserializer::from_str(raw.get());
    (&mut flatten).deserialize(&mut de).map_err(|e| {
        e.to_string()
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_string()
    })?;
    Ok(out)
}

fn uint<T: TryFrom<u64>>(l: Leaf<'_>) -> Option<T> {
    l.as_u64().and_then(|x| T::try_from(x).ok())
}

fn int<T: TryFrom<i64>>(l: Leaf<'_>) -> Option<T> {
    l.as_i64().and_then(|x| T::try_from(x).ok())
}

/// Flattens `data` (any nesting) into elements of `datatype`.
pub fn decode(datatype: DataType, data: &RawValue) -> Result<TensorData, String> {
    let dt = datatype;
    let float = |l: Leaf<'_>| l.as_f64();
    Ok(match dt {
        DataType::Bool => TensorData::Bool(all(data, dt, |l| match l {
            Leaf::Bool(b) => Some(b),
            _ => None,
        })?),
        DataType::U8 => TensorData::U8(all(data, dt, uint)?),
        DataType::U16 => TensorData::U16(all(data, dt, uint)?),
        DataType::U32 => TensorData::U32(all(data, dt, uint)?),
        DataType::U64 => TensorData::U64(all(data, dt, |l| l.as_u64())?),
        DataType::I8 => TensorData::I8(all(data, dt, int)?),
        DataType::I16 => TensorData::I16(all(data, dt, int)?),
        DataType::I32 => TensorData::I32(all(data, dt, int)?),
        DataType::I64 => TensorData::I64(all(data, dt, |l| l.as_i64())?),
        DataType::F16 => TensorData::F16(all(data, dt, |l| float(l).map(f16::from_f64))?),
        DataType::F32 => TensorData::F32(all(data, dt, |l| float(l).map(|x| x as f32))?),
        DataType::F64 => TensorData::F64(all(data, dt, float)?),
        DataType::BF16 => TensorData::BF16(all(data, dt, |l| float(l).map(bf16::from_f64))?),
        DataType::Bytes => TensorData::Bytes(all(data, dt, |l| match l {
            Leaf::Str(s) => Some(s.as_bytes().to_vec()),
            _ => None,
        })?),
    })
}

/// Serializes a tensor's elements as a flat JSON array (BYTES as text, half floats widened).
pub struct JsonData(pub TensorData);

impl JsonData {
    pub fn of(tensor: &Tensor) -> JsonData {
        JsonData(tensor.data())
    }
}

impl Serialize for JsonData {
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
        match &self.0 {
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

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    #[test]
    fn nested_and_flat_data_decode_alike() {
        let nested = decode(DataType::F32, &raw("[[1, 2.5], [3, 4]]")).unwrap();
        let flat = decode(DataType::F32, &raw("[1, 2.5, 3, 4]")).unwrap();
        assert_eq!(nested, flat);
        assert_eq!(flat, TensorData::F32(vec![1.0, 2.5, 3.0, 4.0]));
    }

    #[test]
    fn every_datatype_decodes() {
        assert_eq!(
            decode(DataType::Bool, &raw("[true, false]")).unwrap(),
            TensorData::Bool(vec![true, false])
        );
        assert_eq!(
            decode(DataType::U8, &raw("[255]")).unwrap(),
            TensorData::U8(vec![255])
        );
        assert_eq!(
            decode(DataType::I64, &raw("[-3]")).unwrap(),
            TensorData::I64(vec![-3])
        );
        assert_eq!(
            decode(DataType::Bytes, &raw(r#"["hi", "\u00e9"]"#)).unwrap(),
            TensorData::Bytes(vec![b"hi".to_vec(), "é".as_bytes().to_vec()])
        );
        assert_eq!(
            decode(DataType::F16, &raw("[0.5]")).unwrap(),
            TensorData::F16(vec![f16::from_f32(0.5)])
        );
        assert_eq!(
            decode(DataType::F32, &raw("7")).unwrap(),
            TensorData::F32(vec![7.0])
        );
    }

    #[test]
    fn wrong_elements_are_named() {
        let err = decode(DataType::I32, &raw("[1, 2.5]")).unwrap_err();
        assert!(
            err.contains("element 1 (2.5) is not a valid INT32"),
            "{err}"
        );
        let err = decode(DataType::U8, &raw("[256]")).unwrap_err();
        assert!(err.contains("UINT8"), "{err}");
        let err = decode(DataType::F32, &raw(r#"["x"]"#)).unwrap_err();
        assert!(err.contains("FP32"), "{err}");
        let err = decode(DataType::F32, &raw(r#"[1, {"a": 1}]"#)).unwrap_err();
        assert!(err.contains("FP32"), "{err}");
    }

    #[test]
    fn encodes_flat() {
        let text =
            serde_json::to_string(&JsonData(TensorData::Bytes(vec![b"a".to_vec()]))).unwrap();
        assert_eq!(text, r#"["a"]"#);
        let text = serde_json::to_string(&JsonData(TensorData::F32(vec![0.5, 1.0]))).unwrap();
        assert_eq!(text, "[0.5,1.0]");
    }
}
