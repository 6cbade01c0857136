//! What an ONNX graph declares about its inputs and outputs, and the input facts tract plans with.

use inferd_core::{DataType, ModelSignature, TensorSpec};
use tract_onnx::pb::{self, tensor_proto, tensor_shape_proto::dimension, type_proto};
use tract_onnx::prelude::*;

use crate::convert;

/// One dimension as the ONNX file declares it.
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    Fixed(i64),
    /// A `dim_param` such as `N`: the same name means the same size.
    Named(String),
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Declared {
    pub name: String,
    pub datatype: DataType,
    pub dims: Vec<Dim>,
}

#[derive(Debug, Clone)]
pub struct DeclaredGraph {
    pub inputs: Vec<Declared>,
    pub outputs: Vec<Declared>,
}

/// Symbol given to the first dimension when every input leaves it open: the batch.
const BATCH_SYMBOL: &str = "batch";

/// Operators in the graph (subgraphs included) that tract has no implementation for,
/// as `Op (domain)`, sorted.
pub fn unsupported_ops(proto: &pb::ModelProto, onnx: &tract_onnx::Onnx) -> Vec<String> {
    fn walk(graph: &pb::GraphProto, onnx: &tract_onnx::Onnx, out: &mut Vec<String>) {
        for node in &graph.node {
            if !onnx.op_register.0.contains_key(&node.op_type) {
                let domain = if node.domain.is_empty() {
                    "ai.onnx"
                } else {
                    &node.domain
                };
                out.push(format!("{} ({domain})", node.op_type));
            }
            for attr in &node.attribute {
                attr.g
                    .iter()
                    .chain(&attr.graphs)
                    .for_each(|g| walk(g, onnx, out));
            }
        }
    }
    let mut out = Vec::new();
    if let Some(graph) = &proto.graph {
        walk(graph, onnx, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn onnx_datatype(elem_type: i32) -> Result<DataType, String> {
    use tensor_proto::DataType as P;
    let p = P::try_from(elem_type).map_err(|_| format!("unknown ONNX element type {elem_type}"))?;
    Ok(match p {
        P::Float => DataType::F32,
        P::Uint8 => DataType::U8,
        P::Int8 => DataType::I8,
        P::Uint16 => DataType::U16,
        P::Int16 => DataType::I16,
        P::Int32 => DataType::I32,
        P::Int64 => DataType::I64,
        P::String => DataType::Bytes,
        P::Bool => DataType::Bool,
        P::Float16 => DataType::F16,
        P::Double => DataType::F64,
        P::Uint32 => DataType::U32,
        P::Uint64 => DataType::U64,
        P::Bfloat16 => DataType::BF16,
        other => {
            return Err(format!(
                "ONNX element type {other:?} has no protocol datatype"
            ));
        }
    })
}

fn declared_tensor(info: &pb::ValueInfoProto) -> Result<Declared, String> {
    let Some(type_proto::Value::TensorType(t)) =
        info.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(format!(
            "'{}' is not a tensor; only tensor inputs and outputs are served",
            info.name
        ));
    };
    let datatype = onnx_datatype(t.elem_type).map_err(|e| format!("'{}': {e}", info.name))?;
    let dims = t
        .shape
        .iter()
        .flat_map(|s| &s.dim)
        .map(|d| match &d.value {
            Some(dimension::Value::DimValue(v)) if *v > 0 => Dim::Fixed(*v),
            Some(dimension::Value::DimParam(p)) if !p.is_empty() && p != "?" => {
                Dim::Named(p.clone())
            }
            _ => Dim::Unknown,
        })
        .collect();
    Ok(Declared {
        name: info.name.clone(),
        datatype,
        dims,
    })
}

/// Graph inputs (initializers excluded) and outputs as declared in the file.
pub fn declared(proto: &pb::ModelProto) -> Result<DeclaredGraph, String> {
    let graph = proto.graph.as_ref().ok_or("the file holds no graph")?;
    let initialized: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph
        .input
        .iter()
        .filter(|i| !initialized.contains(i.name.as_str()))
        .map(declared_tensor)
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = graph
        .output
        .iter()
        .map(declared_tensor)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DeclaredGraph { inputs, outputs })
}

/// True when every input has a first dimension the file leaves open: the model batches.
pub fn batches(graph: &DeclaredGraph) -> bool {
    !graph.inputs.is_empty()
        && graph
            .inputs
            .iter()
            .all(|i| matches!(i.dims.first(), Some(Dim::Named(_) | Dim::Unknown)))
}

/// Gives every input a concrete datatype and a shape in which each open dimension is a symbol,
/// so the graph is optimised once for all batch sizes instead of being re-planned per request.
pub fn fix_input_facts(model: &mut InferenceModel, graph: &DeclaredGraph) -> TractResult<()> {
    let batch = batches(graph).then(|| model.symbols.sym(BATCH_SYMBOL));
    for (ix, input) in graph.inputs.iter().enumerate() {
        let dt = convert::datum_type(input.datatype).ok_or_else(|| {
            TractError::msg(format!(
                "input '{}' is {}, which tract cannot run",
                input.name, input.datatype
            ))
        })?;
        let shape: TVec<TDim> = input
            .dims
            .iter()
            .enumerate()
            .map(|(axis, d)| match (d, axis, &batch) {
                (Dim::Fixed(v), _, _) => TDim::from(*v),
                (_, 0, Some(b)) => b.to_dim(),
                (Dim::Named(n), _, _) => model.symbols.sym(n).to_dim(),
                (Dim::Unknown, _, _) => model.symbols.new_with_prefix("d").to_dim(),
            })
            .collect();
        model.set_input_fact(ix, InferenceFact::dt_shape(dt, shape))?;
    }
    Ok(())
}

fn dims_of(dims: &[Dim]) -> Vec<i64> {
    dims.iter()
        .map(|d| if let Dim::Fixed(v) = d { *v } else { -1 })
        .collect()
}

/// The signature served: inputs as declared, outputs as tract resolved them after optimisation
/// (declared output shapes are often missing in exported files).
pub fn resolved(graph: &DeclaredGraph, typed: &TypedModel) -> Result<ModelSignature, String> {
    let inputs = graph
        .inputs
        .iter()
        .map(|i| TensorSpec::new(i.name.clone(), i.datatype, dims_of(&i.dims)))
        .collect();
    let outputs = graph
        .outputs
        .iter()
        .enumerate()
        .map(|(ix, declared)| {
            let fact = typed.output_fact(ix).map_err(|e| format!("{e:#}"))?;
            let datatype = convert::data_type(fact.datum_type).ok_or_else(|| {
                format!(
                    "output '{}' is {:?}, which has no protocol datatype",
                    declared.name, fact.datum_type
                )
            })?;
            let dims = fact
                .shape
                .iter()
                .map(|d| d.as_i64().unwrap_or(-1))
                .collect();
            Ok(TensorSpec::new(declared.name.clone(), datatype, dims))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(ModelSignature { inputs, outputs })
}
