//! Tensors. Every tensor keeps its elements in the protocol's binary form (little-endian,
//! row-major; BYTES elements each behind a 4-byte little-endian length) as a list of refcounted
//! chunks. Bytes received from a socket stay where they arrived, merging requests into a batch
//! appends chunk lists, splitting a batch's outputs slices them: none of these copy. A backend
//! copies once, into the layout it runs on, and only where it must (see [`Tensor::as_slice`]).

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use half::{bf16, f16};

use crate::DataType;

#[cfg(not(target_endian = "little"))]
compile_error!(
    "inferd keeps tensors in the wire's little-endian form and needs a little-endian host"
);

/// Typed, row-major tensor elements: how tensors are built and inspected.
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

/// A fixed-size element type other than BOOL (whose bytes are not all valid values).
pub trait Element: bytemuck::Pod {
    const DATATYPE: DataType;
}

macro_rules! elements {
    ($($t:ty => $dt:ident),*) => {$(
        impl Element for $t {
            const DATATYPE: DataType = DataType::$dt;
        }
    )*};
}
elements!(u8 => U8, u16 => U16, u32 => U32, u64 => U64, i8 => I8, i16 => I16, i32 => I32,
    i64 => I64, f16 => F16, f32 => F32, f64 => F64, bf16 => BF16);

/// Owns a typed vector and shows it as its bytes, so it becomes a chunk without a copy.
struct AsBytes<T: bytemuck::NoUninit>(Vec<T>);

impl<T: bytemuck::NoUninit> AsRef<[u8]> for AsBytes<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

fn owned<T: bytemuck::NoUninit + Send + 'static>(v: Vec<T>) -> Bytes {
    Bytes::from_owner(AsBytes(v))
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
        match self {
            TensorData::Bool(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::U16(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::U64(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I16(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::BF16(v) => v.len(),
            TensorData::Bytes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `n` copies of `value` as `datatype` (numbers cast as `as` does; BOOL: non-zero is true);
    /// `None` for BYTES.
    pub fn filled(datatype: DataType, value: f64, n: usize) -> Option<TensorData> {
        Some(match datatype {
            DataType::Bool => TensorData::Bool(vec![value != 0.0; n]),
            DataType::U8 => TensorData::U8(vec![value as u8; n]),
            DataType::U16 => TensorData::U16(vec![value as u16; n]),
            DataType::U32 => TensorData::U32(vec![value as u32; n]),
            DataType::U64 => TensorData::U64(vec![value as u64; n]),
            DataType::I8 => TensorData::I8(vec![value as i8; n]),
            DataType::I16 => TensorData::I16(vec![value as i16; n]),
            DataType::I32 => TensorData::I32(vec![value as i32; n]),
            DataType::I64 => TensorData::I64(vec![value as i64; n]),
            DataType::F16 => TensorData::F16(vec![f16::from_f64(value); n]),
            DataType::F32 => TensorData::F32(vec![value as f32; n]),
            DataType::F64 => TensorData::F64(vec![value; n]),
            DataType::BF16 => TensorData::BF16(vec![bf16::from_f64(value); n]),
            DataType::Bytes => return None,
        })
    }

    /// The wire form; fixed-size elements are not copied (the vector becomes the buffer).
    pub fn into_bytes(self) -> Bytes {
        match self {
            TensorData::Bool(v) => owned(v),
            TensorData::U8(v) => Bytes::from(v),
            TensorData::U16(v) => owned(v),
            TensorData::U32(v) => owned(v),
            TensorData::U64(v) => owned(v),
            TensorData::I8(v) => owned(v),
            TensorData::I16(v) => owned(v),
            TensorData::I32(v) => owned(v),
            TensorData::I64(v) => owned(v),
            TensorData::F16(v) => owned(v),
            TensorData::F32(v) => owned(v),
            TensorData::F64(v) => owned(v),
            TensorData::BF16(v) => owned(v),
            TensorData::Bytes(v) => {
                let mut out = BytesMut::with_capacity(v.iter().map(|e| 4 + e.len()).sum());
                for e in v {
                    out.extend_from_slice(&(e.len() as u32).to_le_bytes());
                    out.extend_from_slice(&e);
                }
                out.freeze()
            }
        }
    }

    /// Decodes the wire form of `datatype` (see [`Tensor`]), checking that it is whole.
    pub fn from_le_bytes(datatype: DataType, bytes: &[u8]) -> Result<TensorData, String> {
        fn all<T: Element>(b: &[u8]) -> Vec<T> {
            // Copied rather than cast: `b` need not be aligned for T.
            let mut v = vec![T::zeroed(); b.len() / std::mem::size_of::<T>()];
            bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(b);
            v
        }
        if let Some(size) = datatype.byte_size()
            && !bytes.len().is_multiple_of(size)
        {
            return Err(format!(
                "{} bytes is not a whole number of {datatype} elements ({size} bytes each)",
                bytes.len()
            ));
        }
        Ok(match datatype {
            DataType::Bool => TensorData::Bool(bytes.iter().map(|b| *b != 0).collect()),
            DataType::U8 => TensorData::U8(bytes.to_vec()),
            DataType::U16 => TensorData::U16(all(bytes)),
            DataType::U32 => TensorData::U32(all(bytes)),
            DataType::U64 => TensorData::U64(all(bytes)),
            DataType::I8 => TensorData::I8(all(bytes)),
            DataType::I16 => TensorData::I16(all(bytes)),
            DataType::I32 => TensorData::I32(all(bytes)),
            DataType::I64 => TensorData::I64(all(bytes)),
            DataType::F16 => TensorData::F16(all(bytes)),
            DataType::F32 => TensorData::F32(all(bytes)),
            DataType::F64 => TensorData::F64(all(bytes)),
            DataType::BF16 => TensorData::BF16(all(bytes)),
            DataType::Bytes => TensorData::Bytes(
                ByteElements::new(bytes)
                    .map(|e| e.map(<[u8]>::to_vec))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

/// The elements of a BYTES wire form, each checked against what remains.
struct ByteElements<'a> {
    rest: &'a [u8],
    index: usize,
}

impl<'a> ByteElements<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        ByteElements {
            rest: bytes,
            index: 0,
        }
    }
}

impl<'a> Iterator for ByteElements<'a> {
    type Item = Result<&'a [u8], String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let index = self.index;
        self.index += 1;
        let Some((len, rest)) = self.rest.split_first_chunk::<4>() else {
            self.rest = &[];
            return Some(Err(format!(
                "BYTES element {index} has a truncated 4-byte length prefix"
            )));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            self.rest = &[];
            return Some(Err(format!(
                "BYTES element {index} declares {len} bytes but only {} remain",
                rest.len()
            )));
        }
        let (element, rest) = rest.split_at(len);
        self.rest = rest;
        Some(Ok(element))
    }
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

/// A shaped tensor whose elements always match its shape.
#[derive(Clone)]
pub struct Tensor {
    datatype: DataType,
    shape: Vec<usize>,
    /// The wire form in order. BYTES chunks hold whole elements; fixed-size elements may
    /// straddle two chunks (bytes as they arrived).
    chunks: Vec<Bytes>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("datatype", &self.datatype)
            .field("shape", &self.shape)
            .field("bytes", &self.byte_len())
            .finish()
    }
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Tensor) -> bool {
        self.datatype == other.datatype
            && self.shape == other.shape
            && self.contiguous() == other.contiguous()
    }
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
        Ok(Tensor {
            datatype: data.datatype(),
            shape,
            chunks: vec![data.into_bytes()],
        })
    }

    /// A tensor over bytes in the wire form, without copying them (BYTES spread over several
    /// chunks is joined, so that elements never straddle chunks).
    pub fn from_wire(
        datatype: DataType,
        shape: Vec<usize>,
        mut chunks: Vec<Bytes>,
    ) -> Result<Tensor, String> {
        chunks.retain(|c| !c.is_empty());
        let len: usize = chunks.iter().map(Bytes::len).sum();
        if datatype == DataType::Bytes {
            let elements = element_count(&shape).ok_or_else(|| {
                format!("shape {shape:?} has more elements than can be addressed")
            })?;
            if chunks.len() > 1 {
                let mut joined = BytesMut::with_capacity(len);
                chunks.iter().for_each(|c| joined.extend_from_slice(c));
                chunks = vec![joined.freeze()];
            }
            let mut count = 0;
            for element in ByteElements::new(chunks.first().map_or(&[][..], |c| &c[..])) {
                element?;
                count += 1;
            }
            if count != elements {
                return Err(format!(
                    "shape {shape:?} needs {elements} BYTES elements but the data has {count}"
                ));
            }
        } else {
            check_binary_len(datatype, &shape, len)
                .map_err(|e| format!("the data is {len} bytes but {e}"))?;
        }
        Ok(Tensor {
            datatype,
            shape,
            chunks,
        })
    }

    /// Zeros of `datatype` (BYTES: empty elements) in `shape`.
    pub fn zeros(datatype: DataType, shape: Vec<usize>) -> Result<Tensor, String> {
        let n = element_count(&shape)
            .ok_or_else(|| format!("shape {shape:?} has more elements than can be addressed"))?;
        let size = datatype.byte_size().unwrap_or(4);
        Tensor::from_wire(datatype, shape, vec![Bytes::from(vec![0u8; n * size])])
    }

    /// The same tensor in one buffer of its own (a copy), keeping nothing else alive.
    pub fn owned(&self) -> Tensor {
        Tensor {
            datatype: self.datatype,
            shape: self.shape.clone(),
            chunks: vec![Bytes::copy_from_slice(&self.contiguous())],
        }
    }

    /// The same elements in another shape of as many elements (no copy).
    pub fn reshaped(self, shape: Vec<usize>) -> Result<Tensor, String> {
        if element_count(&shape) != Some(self.len()) {
            return Err(format!(
                "cannot reshape {:?} to {shape:?}: the element counts differ",
                self.shape
            ));
        }
        Ok(Tensor { shape, ..self })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn datatype(&self) -> DataType {
        self.datatype
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        element_count(&self.shape).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the wire form.
    pub fn byte_len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// The wire form as refcounted chunks, in order (e.g. to write to a socket as they are).
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// The wire form in one piece: borrowed when it is one chunk, else joined (a copy).
    pub fn contiguous(&self) -> Cow<'_, [u8]> {
        match &self.chunks[..] {
            [] => Cow::Borrowed(&[]),
            [one] => Cow::Borrowed(&one[..]),
            many => Cow::Owned(many.concat()),
        }
    }

    /// The wire form as one buffer: the chunk itself when there is one, else joined.
    pub fn to_bytes(&self) -> Bytes {
        match &self.chunks[..] {
            [one] => one.clone(),
            _ => Bytes::from(self.contiguous().into_owned()),
        }
    }

    /// Copies the wire form into `out`, which must be [`Tensor::byte_len`] bytes.
    pub fn copy_to(&self, out: &mut [u8]) -> Result<(), String> {
        if out.len() != self.byte_len() {
            return Err(format!(
                "{} bytes do not hold this tensor's {}",
                out.len(),
                self.byte_len()
            ));
        }
        let mut at = 0;
        for chunk in &self.chunks {
            out[at..at + chunk.len()].copy_from_slice(chunk);
            at += chunk.len();
        }
        Ok(())
    }

    /// The elements as a typed slice without copying, when they lie in one chunk aligned for
    /// `T` (tensors built from typed data always do; bytes from a socket may not).
    pub fn as_slice<T: Element>(&self) -> Option<&[T]> {
        if self.datatype != T::DATATYPE {
            return None;
        }
        match &self.chunks[..] {
            [] => Some(&[]),
            [one] => bytemuck::try_cast_slice(one).ok(),
            _ => None,
        }
    }

    /// The elements as a typed slice: borrowed when [`Tensor::as_slice`] can, else copied.
    pub fn to_slice<T: Element>(&self) -> Option<Cow<'_, [T]>> {
        if self.datatype != T::DATATYPE {
            return None;
        }
        if let Some(s) = self.as_slice() {
            return Some(Cow::Borrowed(s));
        }
        let mut v = vec![T::zeroed(); self.len()];
        self.copy_to(bytemuck::cast_slice_mut(&mut v)).ok()?;
        Some(Cow::Owned(v))
    }

    /// The elements of a BYTES tensor, borrowed (elements never straddle chunks).
    pub fn byte_elements(&self) -> impl Iterator<Item = &[u8]> {
        let chunks = if self.datatype == DataType::Bytes {
            &self.chunks[..]
        } else {
            &[]
        };
        chunks
            .iter()
            .flat_map(|c| ByteElements::new(c).map_while(Result::ok))
    }

    /// The elements, typed (a copy).
    pub fn data(&self) -> TensorData {
        let bytes = self.contiguous();
        // The wire form was checked when the tensor was made.
        TensorData::from_le_bytes(self.datatype, &bytes)
            .unwrap_or_else(|_| TensorData::Bytes(Vec::new()))
    }

    /// Joins tensors along the first dimension; all must share datatype and the other
    /// dimensions. The chunks are appended, not copied.
    pub fn concat_rows(parts: Vec<Tensor>) -> Result<Tensor, String> {
        let Some(first) = parts.first() else {
            return Err("nothing to concatenate".into());
        };
        let (datatype, inner) = (first.datatype, first.shape.get(1..).unwrap_or_default());
        if first.shape.is_empty()
            || parts
                .iter()
                .any(|p| p.datatype != datatype || p.shape.get(1..) != Some(inner))
        {
            return Err("tensors differ in datatype or non-batch dimensions".into());
        }
        let rows = parts.iter().map(|p| p.shape[0]).sum();
        let shape = [vec![rows], inner.to_vec()].concat();
        let chunks = parts.into_iter().flat_map(|p| p.chunks).collect();
        Ok(Tensor {
            datatype,
            shape,
            chunks,
        })
    }

    /// Splits along the first dimension into pieces of `rows[i]` rows each, by slicing the
    /// chunks (linear in the number of pieces and chunks, no copy).
    pub fn split_rows(self, rows: &[usize]) -> Result<Vec<Tensor>, String> {
        let total: usize = rows.iter().sum();
        if self.shape.first() != Some(&total) {
            return Err(format!(
                "first dimension of {:?} is not the {total} rows to split",
                self.shape
            ));
        }
        if rows.len() == 1 {
            return Ok(vec![self]);
        }
        let inner = self.shape[1..].to_vec();
        let per_row = element_count(&inner).unwrap_or(0);
        // Byte offsets where each piece ends.
        let ends: Vec<usize> = match self.datatype.byte_size() {
            Some(size) => rows
                .iter()
                .scan(0, |at, r| {
                    *at += r * per_row * size;
                    Some(*at)
                })
                .collect(),
            None => self.byte_element_ends(rows, per_row)?,
        };
        let mut pieces = Vec::with_capacity(rows.len());
        let (mut chunk, mut offset, mut start) = (0, 0, 0);
        for (r, end) in rows.iter().zip(ends) {
            let mut taken = Vec::new();
            while start < end {
                let c = &self.chunks[chunk];
                let upto = (end - offset).min(c.len());
                taken.push(c.slice(start - offset..upto));
                start = offset + upto;
                if upto == c.len() {
                    offset += c.len();
                    chunk += 1;
                }
            }
            pieces.push(Tensor {
                datatype: self.datatype,
                shape: [vec![*r], inner.clone()].concat(),
                chunks: taken,
            });
        }
        Ok(pieces)
    }

    /// Byte offsets (over all chunks) where each piece of `rows` BYTES rows ends.
    fn byte_element_ends(&self, rows: &[usize], per_row: usize) -> Result<Vec<usize>, String> {
        let mut ends = Vec::with_capacity(rows.len());
        let mut sizes = self
            .chunks
            .iter()
            .flat_map(|c| ByteElements::new(c).map(|e| e.map(|e| 4 + e.len())));
        let mut at = 0;
        for r in rows {
            for _ in 0..r * per_row {
                at += sizes
                    .next()
                    .ok_or("fewer BYTES elements than the shape says")??;
            }
            ends.push(at);
        }
        Ok(ends)
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

    fn wire(data: &TensorData) -> Vec<u8> {
        Tensor::new(vec![data.len()], data.clone())
            .unwrap()
            .contiguous()
            .into_owned()
    }

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
            let bytes = wire(&data);
            assert_eq!(
                bytes.len(),
                data.len() * data.datatype().byte_size().unwrap()
            );
            assert_eq!(
                TensorData::from_le_bytes(data.datatype(), &bytes).unwrap(),
                data
            );
        }
    }

    #[test]
    fn float_is_little_endian() {
        assert_eq!(wire(&TensorData::F32(vec![1.0])), [0, 0, 0x80, 0x3f]);
    }

    #[test]
    fn bytes_are_length_prefixed() {
        let data = TensorData::Bytes(vec![b"ab".to_vec(), vec![]]);
        let bytes = wire(&data);
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
        let err =
            Tensor::from_wire(DataType::F32, vec![2], vec![Bytes::from(vec![0; 4])]).unwrap_err();
        assert!(err.contains("needs 8"), "{err}");
        let two = Bytes::from_static(&[1, 0, 0, 0, b'a', 0, 0, 0, 0]);
        let err = Tensor::from_wire(DataType::Bytes, vec![3], vec![two]).unwrap_err();
        assert!(
            err.contains("needs 3 BYTES elements but the data has 2"),
            "{err}"
        );
    }

    #[test]
    fn rows_concatenate_and_split_back() {
        let a = Tensor::new(vec![1, 2], TensorData::I64(vec![1, 2])).unwrap();
        let b = Tensor::new(vec![2, 2], TensorData::I64(vec![3, 4, 5, 6])).unwrap();
        let joined = Tensor::concat_rows(vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(joined.shape(), [3, 2]);
        assert_eq!(joined.data(), TensorData::I64(vec![1, 2, 3, 4, 5, 6]));
        assert_eq!(
            joined.clone().split_rows(&[1, 2]).unwrap(),
            vec![a.clone(), b]
        );
        let other = Tensor::new(vec![1, 3], TensorData::I64(vec![0; 3])).unwrap();
        assert!(Tensor::concat_rows(vec![a, other]).is_err());
        assert!(joined.split_rows(&[1, 1]).is_err());
    }

    #[test]
    fn split_slices_across_chunks_without_copying() {
        // Fixed-size elements straddling chunks, as bytes arrive from a socket.
        let bytes = Bytes::from(wire(&TensorData::I32(vec![1, 2, 3, 4, 5, 6])));
        let chunks = vec![bytes.slice(0..6), bytes.slice(6..17), bytes.slice(17..)];
        let t = Tensor::from_wire(DataType::I32, vec![3, 2], chunks).unwrap();
        assert!(
            t.as_slice::<i32>().is_none(),
            "three chunks are not one slice"
        );
        assert_eq!(&*t.to_slice::<i32>().unwrap(), &[1, 2, 3, 4, 5, 6]);
        let pieces = t.split_rows(&[2, 1]).unwrap();
        assert_eq!(pieces[0].data(), TensorData::I32(vec![1, 2, 3, 4]));
        assert_eq!(pieces[1].data(), TensorData::I32(vec![5, 6]));
        let base = bytes.as_ptr() as usize;
        let first = pieces[1].chunks()[0].as_ptr() as usize;
        assert_eq!(first - base, 16, "pieces point into the original buffer");

        let text = Tensor::new(
            vec![3],
            TensorData::Bytes(vec![b"x".to_vec(), b"".to_vec(), b"yz".to_vec()]),
        )
        .unwrap();
        let pieces = text.split_rows(&[1, 2]).unwrap();
        assert_eq!(pieces[0].byte_elements().collect::<Vec<_>>(), [b"x"]);
        assert_eq!(
            pieces[1].byte_elements().collect::<Vec<_>>(),
            [&b""[..], &b"yz"[..]]
        );
    }

    #[test]
    fn typed_tensors_are_viewed_in_place() {
        let t = Tensor::new(vec![2], TensorData::F32(vec![0.5, 1.5])).unwrap();
        assert_eq!(t.as_slice::<f32>(), Some(&[0.5, 1.5][..]));
        assert!(t.as_slice::<i32>().is_none());
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
