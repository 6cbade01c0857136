//! `OneHotEncoder` (ai.onnx.ml): each element becomes a row of n_categories floats with a 1 at
//! its category, over string or integer categories. Unknown categories give all zeros, or an
//! error when `zeros` is 0 (scikit-learn's handle_unknown="error").

use std::collections::HashMap;

use tract_hir::internal::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Categories {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OneHotEncoder {
    categories: Categories,
    unknown_is_error: bool,
}

pub fn build(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let categories = match (
        node.get_attr_opt_vec::<i64>("cats_int64s")?
            .filter(|v| !v.is_empty()),
        node.get_attr_opt_tvec::<&str>("cats_strings")?
            .filter(|v| !v.is_empty()),
    ) {
        (Some(v), None) => Categories::Ints(v),
        (None, Some(v)) => Categories::Strings(v.iter().map(|s| s.to_string()).collect()),
        _ => bail!("OneHotEncoder needs exactly one of cats_int64s and cats_strings"),
    };
    let unknown_is_error = node.get_attr_opt::<i64>("zeros")?.unwrap_or(1) == 0;
    Ok((
        expand(OneHotEncoder {
            categories,
            unknown_is_error,
        }),
        vec![],
    ))
}

impl OneHotEncoder {
    fn width(&self) -> usize {
        match &self.categories {
            Categories::Ints(v) => v.len(),
            Categories::Strings(v) => v.len(),
        }
    }
}

impl Expansion for OneHotEncoder {
    fn name(&self) -> StaticName {
        "OneHotEncoder".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, inputs[0].rank.bex() + 1)?;
        s.given(&inputs[0].rank, move |s, rank| {
            let rank = rank as usize;
            for axis in 0..rank {
                s.equals(&outputs[0].shape[axis], &inputs[0].shape[axis])?;
            }
            s.equals(&outputs[0].shape[rank], self.width().to_dim())
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let op = TypedOneHot::new(self.clone());
        model.wire_node(prefix, op, inputs)
    }
}

/// The typed op keeps a category → column map built once.
#[derive(Debug, Clone)]
struct TypedOneHot {
    spec: OneHotEncoder,
    ints: HashMap<i64, usize>,
    strings: HashMap<String, usize>,
}

impl PartialEq for TypedOneHot {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl Eq for TypedOneHot {}

impl std::hash::Hash for TypedOneHot {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.spec.hash(state)
    }
}

impl TypedOneHot {
    fn new(spec: OneHotEncoder) -> Self {
        let (mut ints, mut strings) = (HashMap::new(), HashMap::new());
        match &spec.categories {
            Categories::Ints(v) => v.iter().enumerate().for_each(|(i, c)| {
                ints.entry(*c).or_insert(i);
            }),
            Categories::Strings(v) => v.iter().enumerate().for_each(|(i, c)| {
                strings.entry(c.clone()).or_insert(i);
            }),
        }
        TypedOneHot {
            spec,
            ints,
            strings,
        }
    }

    fn columns(&self, input: &Tensor) -> TractResult<Vec<Option<usize>>> {
        let plain = input.try_as_plain_ram()?;
        Ok(match &self.spec.categories {
            Categories::Strings(_) => plain
                .as_slice::<String>()?
                .iter()
                .map(|s| self.strings.get(s).copied())
                .collect(),
            Categories::Ints(_) => {
                let ints = input.cast_to::<i64>()?;
                let plain = ints.try_as_plain_ram()?;
                plain
                    .as_slice::<i64>()?
                    .iter()
                    .map(|v| self.ints.get(v).copied())
                    .collect()
            }
        })
    }
}

impl Op for TypedOneHot {
    fn name(&self) -> StaticName {
        "OneHotEncoder".into()
    }

    op_as_typed_op!();
}

impl EvalOp for TypedOneHot {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let width = self.spec.width();
        let columns = self.columns(&input)?;
        let mut out = vec![0f32; columns.len() * width];
        for (i, column) in columns.iter().enumerate() {
            match column {
                Some(c) => out[i * width + c] = 1.0,
                None if self.spec.unknown_is_error => {
                    bail!("OneHotEncoder: element {i} is not a known category")
                }
                None => {}
            }
        }
        let mut shape: TVec<usize> = input.shape().into();
        shape.push(width);
        Ok(tvec!(tensor1(&out).into_shape(&shape)?.into_tvalue()))
    }
}

impl TypedOp for TypedOneHot {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        shape.push(self.spec.width().to_dim());
        Ok(tvec!(f32::fact(&shape)))
    }

    as_op!();
}
