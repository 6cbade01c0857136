//! `LabelEncoder` (ai.onnx.ml, opsets 1 and 2): maps each element through a key → value table
//! of strings, integers or floats, with a default for keys not in the table.

use std::collections::HashMap;

use tract_hir::internal::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;

#[derive(Debug, Clone, PartialEq)]
enum Column {
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Strings(Vec<String>),
}

impl Column {
    fn datum_type(&self) -> DatumType {
        match self {
            Column::Ints(_) => DatumType::I64,
            Column::Floats(_) => DatumType::F32,
            Column::Strings(_) => DatumType::String,
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Ints(v) => v.len(),
            Column::Floats(v) => v.len(),
            Column::Strings(v) => v.len(),
        }
    }

    /// Element `i` as a hashable key (floats by bits; -0.0 and NaN normalised).
    fn key(&self, i: usize) -> Key {
        match self {
            Column::Ints(v) => Key::Int(v[i]),
            Column::Floats(v) => Key::float(v[i]),
            Column::Strings(v) => Key::Str(v[i].clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Float(u32),
    Str(String),
}

impl Key {
    fn float(v: f32) -> Key {
        let v = if v == 0.0 {
            0.0
        } else if v.is_nan() {
            f32::NAN
        } else {
            v
        };
        Key::Float(v.to_bits())
    }
}

#[derive(Debug, Clone)]
struct LabelEncoder {
    keys: Column,
    values: Column,
    default: Column,
    table: HashMap<Key, usize>,
}

impl PartialEq for LabelEncoder {
    fn eq(&self, other: &Self) -> bool {
        (&self.keys, &self.values, &self.default) == (&other.keys, &other.values, &other.default)
    }
}

impl Eq for LabelEncoder {}

impl std::hash::Hash for LabelEncoder {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for c in [&self.keys, &self.values, &self.default] {
            (0..c.len()).for_each(|i| c.key(i).hash(state));
        }
    }
}

fn column(node: &NodeProto, prefix: &str) -> TractResult<Option<Column>> {
    if let Some(v) = node
        .get_attr_opt_vec::<i64>(&format!("{prefix}_int64s"))?
        .filter(|v| !v.is_empty())
    {
        return Ok(Some(Column::Ints(v)));
    }
    if let Some(v) = node
        .get_attr_opt_vec::<f32>(&format!("{prefix}_floats"))?
        .filter(|v| !v.is_empty())
    {
        return Ok(Some(Column::Floats(v)));
    }
    if let Some(v) = node
        .get_attr_opt_tvec::<&str>(&format!("{prefix}_strings"))?
        .filter(|v| !v.is_empty())
    {
        return Ok(Some(Column::Strings(
            v.iter().map(|s| s.to_string()).collect(),
        )));
    }
    Ok(None)
}

fn default_for(node: &NodeProto, dt: DatumType) -> TractResult<Column> {
    Ok(match dt {
        DatumType::I64 => Column::Ints(vec![
            node.get_attr_opt::<i64>("default_int64")?.unwrap_or(-1),
        ]),
        DatumType::F32 => Column::Floats(vec![
            node.get_attr_opt::<f32>("default_float")?.unwrap_or(-0.0),
        ]),
        _ => Column::Strings(vec![
            node.get_attr_opt::<&str>("default_string")?
                .unwrap_or("_Unused")
                .to_string(),
        ]),
    })
}

pub fn build(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let (keys, values) = match (column(node, "keys")?, column(node, "values")?) {
        (Some(k), Some(v)) => (k, v),
        // Opset 1: classes_strings map to their index, or back.
        _ => {
            let classes = node.get_attr_vec::<&str>("classes_strings")?;
            let strings = Column::Strings(classes.iter().map(|s| s.to_string()).collect());
            let ints = Column::Ints((0..classes.len() as i64).collect());
            if node.get_attr_opt::<&str>("default_string")?.is_some()
                && node.get_attr_opt::<i64>("default_int64")?.is_none()
            {
                (ints, strings)
            } else {
                (strings, ints)
            }
        }
    };
    ensure!(
        keys.len() == values.len(),
        "LabelEncoder has {} keys and {} values",
        keys.len(),
        values.len()
    );
    let default = default_for(node, values.datum_type())?;
    let table = (0..keys.len()).rev().map(|i| (keys.key(i), i)).collect();
    Ok((
        expand(LabelEncoder {
            keys,
            values,
            default,
            table,
        }),
        vec![],
    ))
}

impl Expansion for LabelEncoder {
    fn name(&self) -> StaticName {
        "LabelEncoder".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        super::same_shape_rules(s, inputs, outputs, Some(self.values.datum_type()))
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.clone(), inputs)
    }
}

impl Op for LabelEncoder {
    fn name(&self) -> StaticName {
        "LabelEncoder".into()
    }

    op_as_typed_op!();
}

impl EvalOp for LabelEncoder {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let keys: Vec<Key> = match self.keys {
            Column::Strings(_) => input
                .try_as_plain_ram()?
                .as_slice::<String>()?
                .iter()
                .map(|s| Key::Str(s.clone()))
                .collect(),
            Column::Ints(_) => {
                let t = input.cast_to::<i64>()?;
                t.try_as_plain_ram()?
                    .as_slice::<i64>()?
                    .iter()
                    .map(|v| Key::Int(*v))
                    .collect()
            }
            Column::Floats(_) => {
                let t = input.cast_to::<f32>()?;
                t.try_as_plain_ram()?
                    .as_slice::<f32>()?
                    .iter()
                    .map(|v| Key::float(*v))
                    .collect()
            }
        };
        let found = keys.iter().map(|k| self.table.get(k).copied());
        let shape = input.shape();
        let out = match (&self.values, &self.default) {
            (Column::Ints(v), Column::Ints(d)) => {
                tensor1(&found.map(|i| i.map_or(d[0], |i| v[i])).collect::<Vec<_>>())
            }
            (Column::Floats(v), Column::Floats(d)) => {
                tensor1(&found.map(|i| i.map_or(d[0], |i| v[i])).collect::<Vec<_>>())
            }
            (Column::Strings(v), Column::Strings(d)) => tensor1(
                &found
                    .map(|i| i.map_or(d[0].clone(), |i| v[i].clone()))
                    .collect::<Vec<_>>(),
            ),
            _ => bail!("LabelEncoder default does not match its values"),
        };
        Ok(tvec!(out.into_shape(shape)?.into_tvalue()))
    }
}

impl TypedOp for LabelEncoder {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(
            self.values.datum_type().fact(inputs[0].shape.clone())
        ))
    }

    as_op!();
}
