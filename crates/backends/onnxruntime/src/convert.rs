//! Our tensors in and out of ONNX Runtime values. Inputs are passed as views of our buffers (no
//! copy); outputs are copied once into owned tensors.

use std::borrow::Cow;

use bytes::Bytes;
use inferd_core::{DataType, ModelSignature, Tensor, TensorData, TensorSpec};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};

pub fn signature(session: &Session) -> Result<ModelSignature, String> {
    let specs = |outlets: &[ort::value::Outlet], kind: &str| {
        outlets
            .iter()
            .map(|o| match o.dtype() {
                ValueType::Tensor { ty, shape, .. } => Ok(TensorSpec::new(
                    o.name(),
                    datatype(*ty).map_err(|e| format!("{kind} '{}': {e}", o.name()))?,
                    shape.iter().copied().collect(),
                )),
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
    let mut outputs = session.run(values).map_err(|e| e.to_string())?;
    signature
        .outputs
        .iter()
        .map(|spec| {
            let value = outputs
                .remove(&spec.name)
                .ok_or_else(|| format!("ONNX Runtime returned no output '{}'", spec.name))?;
            from_value(value, spec.datatype).map_err(|e| format!("output '{}': {e}", spec.name))
        })
        .collect()
}

/// A view of the request's elements when they are aligned in one buffer, else one copy.
fn to_value(t: &Tensor) -> Result<SessionInputValue<'_>, String> {
    let shape: Vec<i64> = t.shape().iter().map(|d| *d as i64).collect();
    macro_rules! typed {
        ($ty:ty) => {
            match t.to_slice::<$ty>() {
                Some(Cow::Borrowed(view)) => TensorRef::from_array_view((shape, view))
                    .map(SessionInputValue::from)
                    .map_err(|e| e.to_string()),
                Some(Cow::Owned(copy)) => ort::value::Tensor::from_array((shape, copy))
                    .map(SessionInputValue::from)
                    .map_err(|e| e.to_string()),
                None => Err(format!("{} data is malformed", t.datatype())),
            }
        };
    }
    match t.datatype() {
        DataType::Bool => match t.data() {
            TensorData::Bool(v) => ort::value::Tensor::from_array((shape, v))
                .map(SessionInputValue::from)
                .map_err(|e| e.to_string()),
            _ => Err("BOOL data is malformed".into()),
        },
        DataType::U8 => typed!(u8),
        DataType::U16 => typed!(u16),
        DataType::U32 => typed!(u32),
        DataType::U64 => typed!(u64),
        DataType::I8 => typed!(i8),
        DataType::I16 => typed!(i16),
        DataType::I32 => typed!(i32),
        DataType::I64 => typed!(i64),
        DataType::F16 => typed!(half::f16),
        DataType::F32 => typed!(f32),
        DataType::F64 => typed!(f64),
        DataType::BF16 => typed!(half::bf16),
        DataType::Bytes => {
            let strings = t
                .byte_elements()
                .map(|b| String::from_utf8(b.to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| "ONNX string tensors must hold UTF-8 text".to_string())?;
            ort::value::Tensor::from_string_array((shape, &strings[..]))
                .map(SessionInputValue::from)
                .map_err(|e| e.to_string())
        }
    }
}

/// An output value of ONNX Runtime shown as its bytes, so outputs leave without a copy.
struct Owned<T>(DynValue, std::marker::PhantomData<T>);

impl<T: ort::value::PrimitiveTensorElementType + bytemuck::NoUninit + std::fmt::Debug> AsRef<[u8]>
    for Owned<T>
{
    fn as_ref(&self) -> &[u8] {
        // The type was checked when the value was wrapped.
        self.0
            .try_extract_tensor::<T>()
            .map(|(_, data)| bytemuck::cast_slice(data))
            .unwrap_or_default()
    }
}

fn from_value(value: DynValue, datatype: DataType) -> Result<Tensor, String> {
    macro_rules! owned {
        ($t:ty) => {{
            let (shape, _) = value
                .try_extract_tensor::<$t>()
                .map_err(|e| e.to_string())?;
            let shape: Vec<usize> = shape.iter().map(|d| *d as usize).collect();
            let bytes = Bytes::from_owner(Owned::<$t>(value, std::marker::PhantomData));
            Tensor::from_wire(datatype, shape, vec![bytes])
        }};
    }
    match datatype {
        DataType::Bool => owned!(bool),
        DataType::U8 => owned!(u8),
        DataType::U16 => owned!(u16),
        DataType::U32 => owned!(u32),
        DataType::U64 => owned!(u64),
        DataType::I8 => owned!(i8),
        DataType::I16 => owned!(i16),
        DataType::I32 => owned!(i32),
        DataType::I64 => owned!(i64),
        DataType::F16 => owned!(half::f16),
        DataType::F32 => owned!(f32),
        DataType::F64 => owned!(f64),
        DataType::BF16 => owned!(half::bf16),
        DataType::Bytes => {
            let (shape, strings) = value.try_extract_strings().map_err(|e| e.to_string())?;
            let shape = shape.iter().map(|d| *d as usize).collect();
            Tensor::new(
                shape,
                TensorData::Bytes(strings.into_iter().map(String::into_bytes).collect()),
            )
        }
    }
}
