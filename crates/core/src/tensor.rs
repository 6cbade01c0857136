use half::{bf16, f16};

use crate::DataType;

/// Typed, row-major tensor elements.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F16(Vec<f16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    BF16(Vec<bf16>),
    Bytes(Vec<Vec<u8>>),
}

/// Runs `$body` with `$v` bound to the typed vector of every fixed-size variant, and `$bytes`
/// for BYTES. Keeps the per-type code in one place.
macro_rules! with_fixed {
    ($data:expr, $v:ident => $body:expr, $b:ident => $bytes:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::U16($v) => $body,
            TensorData::U32($v) => $body,
            TensorData::U64($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::F16($v) => $body,
            TensorData::F32($v) => $body,
            TensorData::F64($v) => $body,
            TensorData::BF16($v) => $body,
            TensorData::Bytes($b) => $bytes,
        }
    };
}

/// Little-endian fixed-size element encoding, as the binary tensor extension and gRPC raw
/// contents carry it.
trait LeElement: Sized + Copy {
    const SIZE: usize;
    fn read(b: &[u8]) -> Self;
    fn write(self, out: &mut Vec<u8>);
}

macro_rules! le_element {
    ($($t:ty),*) => {$(
        impl LeElement for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn read(b: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                <$t>::from_le_bytes(a)
            }
            fn write(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
le_element!(u8, u16, u32, u64, i8, i16, i32, i64, f16, f32, f64, bf16);

impl LeElement for bool {
    const SIZE: usize = 1;
    fn read(b: &[u8]) -> Self {
        b[0] != 0
    }
    fn write(self, out: &mut Vec<u8>) {
        out.push(self as u8);
    }
}

fn read_all<T: LeElement>(bytes: &[u8]) -> Vec<T> {
    bytes.chunks_exact(T::SIZE).map(T::read).collect()
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::U8(_) => DataType::U8,
            TensorData::U16(_) => DataType::U16,
            TensorData::U32(_) => DataType::U32,
            TensorData::U64(_) => DataType::U64,
            TensorData::I8(_) => DataType::I8,
            TensorData::I16(_) => DataType::I16,
            TensorData::I32(_) => DataType::I32,
            TensorData::I64(_) => DataType::I64,
            TensorData::F16(_) => DataType::F16,
            TensorData::F32(_) => DataType::F32,
            TensorData::F64(_) => DataType::F64,
            TensorData::BF16(_) => DataType::BF16,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        with_fixed!(self, v => v.len(), b => b.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decodes the binary wire form: little-endian elements, or for BYTES a 4-byte little-endian
    /// length before each element.
    pub fn from_le_bytes(datatype: DataType, bytes: &[u8]) -> Result<TensorData, String> {
        if let Some(size) = datatype.byte_size()
            && !bytes.len().is_multiple_of(size)
        {
            return Err(format!(
                "{} bytes is not a whole number of {datatype} elements ({size} bytes each)",
                bytes.len()
            ));
        }
        Ok(match datatype {
            DataType::Bool => TensorData::Bool(read_all(bytes)),
            DataType::U8 => TensorData::U8(bytes.to_vec()),
            DataType::U16 => TensorData::U16(read_all(bytes)),
            DataType::U32 => TensorData::U32(read_all(bytes)),
            DataType::U64 => TensorData::U64(read_all(bytes)),
            DataType::I8 => TensorData::I8(read_all(bytes)),
            DataType::I16 => TensorData::I16(read_all(bytes)),
            DataType::I32 => TensorData::I32(read_all(bytes)),
            DataType::I64 => TensorData::I64(read_all(bytes)),
            DataType::F16 => TensorData::F16(read_all(bytes)),
            DataType::F32 => TensorData::F32(read_all(bytes)),
            DataType::F64 => TensorData::F64(read_all(bytes)),
            DataType::BF16 => TensorData::BF16(read_all(bytes)),
            DataType::Bytes => TensorData::Bytes(read_length_prefixed(bytes)?),
        })
    }

    /// Appends the binary wire form (see [`TensorData::from_le_bytes`]) to `out`.
    pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
        out.reserve(self.le_byte_len());
        with_fixed!(
            self,
            v => v.iter().for_each(|x| x.write(out)),
            b => {
                for e in b {
                    out.extend_from_slice(&(e.len() as u32).to_le_bytes());
                    out.extend_from_slice(e);
                }
            }
        )
    }

    /// Appends `other`'s elements; both must be of the same datatype (checked by callers).
    fn append(&mut self, other: TensorData) {
        macro_rules! join {
            ($($v:ident),*) => {
                match (self, other) {
                    $((TensorData::$v(a), TensorData::$v(b)) => a.extend(b),)*
                    _ => {}
                }
            };
        }
        join!(
            Bool, U8, U16, U32, U64, I8, I16, I32, I64, F16, F32, F64, BF16, Bytes
        )
    }

    /// Keeps the first `at` elements and returns the rest.
    fn split_off(&mut self, at: usize) -> TensorData {
        macro_rules! split {
            ($($v:ident),*) => {
                match self {
                    $(TensorData::$v(a) => TensorData::$v(a.split_off(at.min(a.len()))),)*
                }
            };
        }
        split!(
            Bool, U8, U16, U32, U64, I8, I16, I32, I64, F16, F32, F64, BF16, Bytes
        )
    }

    /// Number of bytes [`TensorData::write_le_bytes`] appends.
    pub fn le_byte_len(&self) -> usize {
        match (self, self.datatype().byte_size()) {
            (TensorData::Bytes(b), _) => b.iter().map(|e| 4 + e.len()).sum(),
            (_, Some(size)) => size * self.len(),
            (_, None) => 0,
        }
    }
}

fn read_length_prefixed(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(format!(
                "BYTES element {} has a truncated 4-byte length prefix",
                out.len()
            ));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(format!(
                "BYTES element {} declares {len} bytes but only {} remain",
                out.len(),
                rest.len()
            ));
        }
        out.push(rest[..len].to_vec());
        bytes = &rest[len..];
    }
    Ok(out)
}

/// Number of elements of `shape`, or `None` when it overflows (a hostile or mistaken shape).
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d))
}

/// Dimensions as both protocols carry them (signed), refusing negative ones.
pub fn dims_from_wire(shape: &[i64]) -> Result<Vec<usize>, String> {
    shape
        .iter()
        .map(|d| usize::try_from(*d))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("shape {shape:?} has a negative dimension"))
}

/// Checks that `len` bytes of binary data fit `shape` of `datatype` (BYTES is variable-length
/// and always passes); the error says what the shape needs.
pub fn check_binary_len(datatype: DataType, shape: &[usize], len: usize) -> Result<(), String> {
    let Some(width) = datatype.byte_size() else {
        return Ok(());
    };
    match element_count(shape).and_then(|n| n.checked_mul(width)) {
        Some(needed) if needed == len => Ok(()),
        Some(needed) => Err(format!("shape {shape:?} of {datatype} needs {needed}")),
        None => Err(format!(
            "shape {shape:?} of {datatype} needs more than can be addressed"
        )),
    }
}

/// A shaped tensor whose element count always matches its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor, String> {
        let expected = element_count(&shape)
            .ok_or_else(|| format!("shape {shape:?} has more elements than can be addressed"))?;
        if expected != data.len() {
            return Err(format!(
                "shape {shape:?} needs {expected} elements but {} were given",
                data.len()
            ));
        }
        Ok(Tensor { shape, data })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        (self.shape, self.data)
    }

    /// Joins tensors along the first dimension; all must share datatype and the other dimensions.
    pub fn concat_rows(parts: Vec<Tensor>) -> Result<Tensor, String> {
        let Some(first) = parts.first() else {
            return Err("nothing to concatenate".into());
        };
        let (dt, inner) = (
            first.datatype(),
            first.shape.get(1..).unwrap_or_default().to_vec(),
        );
        if first.shape.is_empty()
            || parts
                .iter()
                .any(|p| p.datatype() != dt || p.shape.get(1..) != Some(&inner[..]))
        {
            return Err("tensors differ in datatype or non-batch dimensions".into());
        }
        let rows = parts.iter().map(|p| p.shape[0]).sum();
        let mut iter = parts.into_iter().map(|p| p.data);
        let mut data = iter.next().unwrap_or(TensorData::Bool(Vec::new()));
        for part in iter {
            data.append(part);
        }
        Tensor::new([vec![rows], inner].concat(), data)
    }

    /// Splits along the first dimension into pieces of `rows[i]` rows each.
    pub fn split_rows(self, rows: &[usize]) -> Result<Vec<Tensor>, String> {
        let total: usize = rows.iter().sum();
        if self.shape.first() != Some(&total) {
            return Err(format!(
                "first dimension of {:?} is not the {total} rows to split",
                self.shape
            ));
        }
        let inner = self.shape[1..].to_vec();
        let per_row: usize = inner.iter().product();
        let mut data = self.data;
        let mut out = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let rest = if i + 1 == rows.len() {
                None
            } else {
                Some(data.split_off(r * per_row))
            };
            let shape = [vec![*r], inner.clone()].concat();
            out.push(Tensor::new(
                shape,
                std::mem::replace(&mut data, TensorData::Bool(Vec::new())),
            )?);
            if let Some(rest) = rest {
                data = rest;
            }
        }
        Ok(out)
    }
}

/// A tensor with the model input or output name it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub tensor: Tensor,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_size_round_trip() {
        let cases = vec![
            TensorData::Bool(vec![true, false, true]),
            TensorData::I64(vec![-1, 0, i64::MAX]),
            TensorData::F32(vec![1.5, -0.25]),
            TensorData::F16(vec![f16::from_f32(0.5)]),
            TensorData::BF16(vec![bf16::from_f32(-2.0)]),
            TensorData::U16(vec![1, 65535]),
        ];
        for data in cases {
            let mut bytes = Vec::new();
            data.write_le_bytes(&mut bytes);
            assert_eq!(bytes.len(), data.le_byte_len());
            assert_eq!(
                TensorData::from_le_bytes(data.datatype(), &bytes).unwrap(),
                data
            );
        }
    }

    #[test]
    fn float_is_little_endian() {
        let mut bytes = Vec::new();
        TensorData::F32(vec![1.0]).write_le_bytes(&mut bytes);
        assert_eq!(bytes, [0, 0, 0x80, 0x3f]);
    }

    #[test]
    fn bytes_are_length_prefixed() {
        let data = TensorData::Bytes(vec![b"ab".to_vec(), vec![]]);
        let mut bytes = Vec::new();
        data.write_le_bytes(&mut bytes);
        assert_eq!(bytes, [2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0]);
        assert_eq!(
            TensorData::from_le_bytes(DataType::Bytes, &bytes).unwrap(),
            data
        );
    }

    #[test]
    fn malformed_binary_is_rejected_with_reason() {
        let err = TensorData::from_le_bytes(DataType::F32, &[0; 6]).unwrap_err();
        assert!(err.contains("6 bytes") && err.contains("FP32"), "{err}");
        let err = TensorData::from_le_bytes(DataType::Bytes, &[5, 0, 0, 0, 1]).unwrap_err();
        assert!(err.contains("declares 5 bytes"), "{err}");
        let err = TensorData::from_le_bytes(DataType::Bytes, &[1, 0]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn rows_concatenate_and_split_back() {
        let a = Tensor::new(vec![1, 2], TensorData::I64(vec![1, 2])).unwrap();
        let b = Tensor::new(vec![2, 2], TensorData::I64(vec![3, 4, 5, 6])).unwrap();
        let joined = Tensor::concat_rows(vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(joined.shape(), [3, 2]);
        assert_eq!(
            joined.clone().split_rows(&[1, 2]).unwrap(),
            vec![a.clone(), b]
        );
        let other = Tensor::new(vec![1, 3], TensorData::I64(vec![0; 3])).unwrap();
        assert!(Tensor::concat_rows(vec![a, other]).is_err());
        assert!(joined.split_rows(&[1, 1]).is_err());
    }

    #[test]
    fn shape_must_match_elements() {
        assert!(Tensor::new(vec![2, 2], TensorData::F32(vec![0.0; 4])).is_ok());
        let err = Tensor::new(vec![2, 3], TensorData::F32(vec![0.0; 4])).unwrap_err();
        assert!(err.contains("needs 6 elements but 4"), "{err}");
        let err = Tensor::new(vec![1 << 40, 1 << 40], TensorData::F32(vec![])).unwrap_err();
        assert!(err.contains("more elements than can be addressed"), "{err}");
    }
}
