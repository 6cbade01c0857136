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

pub fn to_tract(tensor: Tensor) -> Result<TractTensor, String> {
    let (shape, data) = tensor.into_parts();
    let t = match data {
        TensorData::Bool(v) => TractTensor::from_shape(&shape, &v),
        TensorData::U8(v) => TractTensor::from_shape(&shape, &v),
        TensorData::U16(v) => TractTensor::from_shape(&shape, &v),
        TensorData::U32(v) => TractTensor::from_shape(&shape, &v),
        TensorData::U64(v) => TractTensor::from_shape(&shape, &v),
        TensorData::I8(v) => TractTensor::from_shape(&shape, &v),
        TensorData::I16(v) => TractTensor::from_shape(&shape, &v),
        TensorData::I32(v) => TractTensor::from_shape(&shape, &v),
        TensorData::I64(v) => TractTensor::from_shape(&shape, &v),
        TensorData::F16(v) => TractTensor::from_shape(&shape, &v),
        TensorData::F32(v) => TractTensor::from_shape(&shape, &v),
        TensorData::F64(v) => TractTensor::from_shape(&shape, &v),
        TensorData::BF16(_) => return Err("BF16 is not supported by the tract backend".into()),
        TensorData::Bytes(v) => {
            let strings = v
                .into_iter()
                .enumerate()
                .map(|(i, b)| {
                    String::from_utf8(b)
                        .map_err(|_| format!("BYTES element {i} is not valid UTF-8 text"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            return tract_ndarray::ArrayD::from_shape_vec(shape, strings)
                .map(TractTensor::from)
                .map_err(|e| e.to_string());
        }
    };
    t.map_err(|e| format!("{e:#}"))
}

pub fn from_tract(t: &TractTensor) -> Result<Tensor, String> {
    fn slice<T: tract_onnx::prelude::Datum + Clone>(t: &TractTensor) -> Result<Vec<T>, String> {
        let view = t.try_as_plain_ram().map_err(|e| format!("{e:#}"))?;
        view.as_slice::<T>()
            .map(|s| s.to_vec())
            .map_err(|e| format!("{e:#}"))
    }
    let data = match t.datum_type() {
        DatumType::Bool => TensorData::Bool(slice(t)?),
        DatumType::U8 => TensorData::U8(slice(t)?),
        DatumType::U16 => TensorData::U16(slice(t)?),
        DatumType::U32 => TensorData::U32(slice(t)?),
        DatumType::U64 => TensorData::U64(slice(t)?),
        DatumType::I8 => TensorData::I8(slice(t)?),
        DatumType::I16 => TensorData::I16(slice(t)?),
        DatumType::I32 => TensorData::I32(slice(t)?),
        DatumType::I64 => TensorData::I64(slice(t)?),
        DatumType::F16 => TensorData::F16(slice(t)?),
        DatumType::F32 => TensorData::F32(slice(t)?),
        DatumType::F64 => TensorData::F64(slice(t)?),
        DatumType::String => TensorData::Bytes(
            slice::<String>(t)?
                .into_iter()
                .map(String::into_bytes)
                .collect(),
        ),
        DatumType::TDim => {
            let cast = t.cast_to::<i64>().map_err(|e| format!("{e:#}"))?;
            TensorData::I64(slice(&cast)?)
        }
        other => {
            return Err(format!(
                "tract produced {other:?}, which has no protocol datatype"
            ));
        }
    };
    Tensor::new(t.shape().to_vec(), data)
}
