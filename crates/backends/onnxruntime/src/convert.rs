//! Our tensors in and out of ONNX Runtime values. Inputs are passed as views of our buffers (no
//! copy); outputs are copied once into owned tensors.

use inferd_core::{DataType, ModelSignature, Tensor, TensorData, TensorSpec};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};

pub fn signature(session: &Session) -> Result<ModelSignature, String> {
    let specs = |outlets: &[ort::value::Outlet], kind: &str| {
        outlets
            .iter()
            .map(|o| match o.dtype() {
                ValueType::Tensor { ty, shape, .. } => Ok(TensorSpec {
                    name: o.name().to_string(),
                    datatype: datatype(*ty)
                        .map_err(|e| format!("{kind} '{}': {e}", o.name()))?,
                    dims: shape.iter().copied().collect(),
                }),
                other => Err(format!(
                    "{kind} '{}' is a {other}; the protocol carries tensors only (export \
                     scikit-learn classifiers without ZipMap: skl2onnx options {{'zipmap': False}})",
                    o.name()
                )),
            })
            .collect::<Result<Vec<_>, String>>()
    };
    Ok(ModelSignature {
        inputs: specs(session.inputs(), "input")?,
        outputs: specs(session.outputs(), "output")?,
    })
}

fn datatype(ty: TensorElementType) -> Result<DataType, String> {
    Ok(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::U8,
        TensorElementType::Uint16 => DataType::U16,
        TensorElementType::Uint32 => DataType::U32,
        TensorElementType::Uint64 => DataType::U64,
        TensorElementType::Int8 => DataType::I8,
        TensorElementType::Int16 => DataType::I16,
        TensorElementType::Int32 => DataType::I32,
        TensorElementType::Int64 => DataType::I64,
        TensorElementType::Float16 => DataType::F16,
        TensorElementType::Float32 => DataType::F32,
        TensorElementType::Float64 => DataType::F64,
        TensorElementType::Bfloat16 => DataType::BF16,
        TensorElementType::String => DataType::Bytes,
        other => return Err(format!("element type {other:?} has no protocol datatype")),
    })
}

/// Runs one execution: inputs in signature order, outputs in signature order.
pub fn run(
    session: &mut Session,
    signature: &ModelSignature,
    inputs: &[Tensor],
) -> Result<Vec<Tensor>, String> {
    let values = inputs
        .iter()
        .zip(&signature.inputs)
        .map(|(t, spec)| {
            to_value(t)
                .map(|v| (spec.name.as_str(), v))
                .map_err(|e| format!("input '{}': {e}", spec.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = session.run(values).map_err(|e| e.to_string())?;
    signature
        .outputs
        .iter()
        .map(|spec| {
            let value = outputs
                .get(&spec.name)
                .ok_or_else(|| format!("ONNX Runtime returned no output '{}'", spec.name))?;
            from_value(value, spec.datatype).map_err(|e| format!("output '{}': {e}", spec.name))
        })
        .collect()
}

fn to_value(t: &Tensor) -> Result<SessionInputValue<'_>, String> {
    let shape: Vec<i64> = t.shape().iter().map(|d| *d as i64).collect();
    macro_rules! view {
        ($v:expr) => {
            TensorRef::from_array_view((shape, &$v[..]))
                .map(SessionInputValue::from)
                .map_err(|e| e.to_string())
        };
    }
    match t.data() {
        TensorData::Bool(v) => view!(v),
        TensorData::U8(v) => view!(v),
        TensorData::U16(v) => view!(v),
        TensorData::U32(v) => view!(v),
        TensorData::U64(v) => view!(v),
        TensorData::I8(v) => view!(v),
        TensorData::I16(v) => view!(v),
        TensorData::I32(v) => view!(v),
        TensorData::I64(v) => view!(v),
        TensorData::F16(v) => view!(v),
        TensorData::F32(v) => view!(v),
        TensorData::F64(v) => view!(v),
        TensorData::BF16(v) => view!(v),
        TensorData::Bytes(v) => {
            let strings = v
                .iter()
                .map(|b| String::from_utf8(b.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| "ONNX string tensors must hold UTF-8 text".to_string())?;
            ort::value::Tensor::from_string_array((shape, &strings[..]))
                .map(SessionInputValue::from)
                .map_err(|e| e.to_string())
        }
    }
}

fn from_value(value: &DynValue, datatype: DataType) -> Result<Tensor, String> {
    macro_rules! copy {
        ($t:ty, $variant:ident) => {{
            let (shape, data) = value
                .try_extract_tensor::<$t>()
                .map_err(|e| e.to_string())?;
            (
                shape.iter().map(|d| *d as usize).collect::<Vec<_>>(),
                TensorData::$variant(data.to_vec()),
            )
        }};
    }
    let (shape, data) = match datatype {
        DataType::Bool => copy!(bool, Bool),
        DataType::U8 => copy!(u8, U8),
        DataType::U16 => copy!(u16, U16),
        DataType::U32 => copy!(u32, U32),
        DataType::U64 => copy!(u64, U64),
        DataType::I8 => copy!(i8, I8),
        DataType::I16 => copy!(i16, I16),
        DataType::I32 => copy!(i32, I32),
        DataType::I64 => copy!(i64, I64),
        DataType::F16 => copy!(half::f16, F16),
        DataType::F32 => copy!(f32, F32),
        DataType::F64 => copy!(f64, F64),
        DataType::BF16 => copy!(half::bf16, BF16),
        DataType::Bytes => {
            let (shape, strings) = value.try_extract_strings().map_err(|e| e.to_string())?;
            (
                shape.iter().map(|d| *d as usize).collect(),
                TensorData::Bytes(strings.into_iter().map(String::into_bytes).collect()),
            )
        }
    };
    Tensor::new(shape, data)
}
