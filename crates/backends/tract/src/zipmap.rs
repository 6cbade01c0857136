//! `ZipMap` turns class probabilities into a sequence of maps, which the V2 protocol cannot carry.
//! Classifiers exported without `zipmap=False` still serve: the ZipMap output becomes its input
//! tensor, probabilities of shape [batch, classes] in class order.

use tract_onnx::pb::{self, tensor_proto, type_proto};

/// Rewrites every ZipMap node into an Identity and retypes its graph output as a float tensor.
/// Returns the names of the outputs replaced.
pub fn replace_with_tensors(proto: &mut pb::ModelProto) -> Vec<String> {
    let Some(graph) = proto.graph.as_mut() else {
        return Vec::new();
    };
    let mut replaced = Vec::new();
    for node in graph.node.iter_mut().filter(|n| n.op_type == "ZipMap") {
        let Some(output) = node.output.first().cloned() else {
            continue;
        };
        node.op_type = "Identity".into();
        node.domain.clear();
        node.attribute.clear();
        if let Some(info) = graph.output.iter_mut().find(|o| o.name == output) {
            info.r#type = Some(pb::TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: tensor_proto::DataType::Float as i32,
                    shape: None,
                })),
                ..Default::default()
            });
        }
        replaced.push(output);
    }
    replaced
}
