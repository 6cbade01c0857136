//! Tensor conversion between inferd and tract.

use inferd_core::{DataType, Tensor, TensorData};
use tract_onnx::prelude::{DatumType, Tensor as TractTensor, tract_ndarray};

pub fn datum_type(dt: DataType) -> Option<DatumType> {
    Some(match dt {
        DataType::Bool => DatumType::Bool,
        DataType::U8 => DatumType::U8,
        DataType::U16 => DatumType::U16,
        DataType::U32 => DatumType::U32,
        DataType::U64 => DatumType::U64,
        DataType::I8 => DatumType::I8,
        DataType::I16 => DatumType::I16,
        DataType::I32 => DatumType::I32,
        DataType::I64 => DatumType::I64,
        DataType::F16 => DatumType::F16,
        DataType::F32 => DatumType::F32,
        DataType::F64 => DatumType::F64,
        DataType::Bytes => DatumType::String,
        DataType::BF16 => return None,
    })
}

pub fn data_type(dt: DatumType) -> Option<DataType> {
    Some(match dt {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::U8,
        DatumType::U16 => DataType::U16,
        DatumType::U32 => DataType::U32,
        DatumType::U64 => DataType::U64,
        DatumType::I8 => DataType::I8,
        DatumType::I16 => DataType::I16,
        DatumType::I32 => DataType::I32,
        DatumType::I64 | DatumType::TDim => DataType::I64,
        DatumType::F16 => DataType::F16,
        DatumType::F32 => DataType::F32,
        DatumType::F64 => DataType::F64,
        DatumType::String => DataType::Bytes,
        _ => return None,
    })
}

/// The one copy on the way in: the request's bytes into tract's aligned storage.
pub fn to_tract(tensor: &Tensor) -> Result<TractTensor, String> {
    let shape = tensor.shape();
    match tensor.datatype() {
        DataType::BF16 => Err("BF16 is not supported by the tract backend".into()),
        DataType::Bytes => {
            let strings = tensor
                .byte_elements()
                .enumerate()
                .map(|(i, b)| {
                    String::from_utf8(b.to_vec())
                        .map_err(|_| format!("BYTES element {i} is not valid UTF-8 text"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            tract_ndarray::ArrayD::from_shape_vec(shape.to_vec(), strings)
                .map(TractTensor::from)
                .map_err(|e| e.to_string())
        }
        // Any byte but 0 or 1 is not a bool: decoded, not copied.
        DataType::Bool => match tensor.data() {
            TensorData::Bool(v) => TractTensor::from_shape(shape, &v).map_err(|e| format!("{e:#}")),
            _ => Err("BOOL data is malformed".into()),
        },
        dt => {
            let datum = datum_type(dt).ok_or_else(|| format!("{dt} is not supported by tract"))?;
            // SAFETY: every byte of the new tensor is written by `copy_to` before it is read,
            // and every bit pattern is a valid value of these numeric types.
            let mut t = unsafe { TractTensor::uninitialized_dt(datum, shape) }
                .map_err(|e| format!("{e:#}"))?;
            tensor.copy_to(t.as_bytes_mut())?;
            Ok(t)
        }
    }
}

/// A tract output tensor owned by a buffer, so outputs leave without a copy.
struct Plain(TractTensor);

impl AsRef<[u8]> for Plain {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

pub fn from_tract(t: TractTensor) -> Result<Tensor, String> {
    let shape = t.shape().to_vec();
    match t.datum_type() {
        DatumType::String => {
            let view = t.try_as_plain_ram().map_err(|e| format!("{e:#}"))?;
            let strings = view
                .as_slice::<String>()
                .map_err(|e| format!("{e:#}"))?
                .iter()
                .map(|s| s.clone().into_bytes())
                .collect();
            Tensor::new(shape, TensorData::Bytes(strings))
        }
        DatumType::TDim => {
            let cast = t
                .cast_to::<i64>()
                .map_err(|e| format!("{e:#}"))?
                .into_owned();
            from_tract(cast)
        }
        other => {
            let dt = data_type(other)
                .filter(|dt| *dt != DataType::Bytes)
                .ok_or_else(|| {
                    format!("tract produced {other:?}, which has no protocol datatype")
                })?;
            // Owned, plain memory: its bytes are the wire form on a little-endian host.
            t.try_as_plain_ram().map_err(|e| format!("{e:#}"))?;
            Tensor::from_wire(dt, shape, vec![bytes::Bytes::from_owner(Plain(t))])
        }
    }
}
