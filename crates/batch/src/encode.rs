//! A chunk of rows into one inference request: each row's fields converted to the inputs'
//! datatypes and stacked along the batch dimension. A row that does not convert is left out
//! with its reason; the others go on.

use inferd_core::{DataType, NamedTensor, Tensor, TensorSpec};
use inferd_runtime::InferRequest;
use serde_json::Value as Json;

use crate::ModelInfo;
use crate::model::Layout;
use crate::reader::{Fields, Row};
use crate::value::{Cell, Column, Value};

/// A row of the chunk: its index and id.
#[derive(Debug, Clone)]
pub struct RowKey {
    pub index: u64,
    pub id: Option<String>,
}

pub struct Encoded {
    /// `None` when no row of the chunk converted.
    pub request: Option<InferRequest>,
    pub rows: Vec<RowKey>,
    pub failed: Vec<(RowKey, String)>,
    /// Whether the request stacks `rows` along a batch dimension (else it is one row).
    pub stacked: bool,
}

/// How rows map to inputs for this job.
pub struct Mapping<'a> {
    pub model: &'a ModelInfo,
    /// From the CSV header or the Parquet columns.
    pub layout: Option<&'a Layout>,
    /// `--columns`: for JSON rows of a one-input model, the keys forming its vector.
    pub columns: Option<&'a [String]>,
}

fn fixed_width(dims: &[i64]) -> Option<usize> {
    dims.iter()
        .all(|d| *d >= 0)
        .then(|| dims.iter().product::<i64>() as usize)
}

/// The dimensions of `count` elements shaped as `dims` (one `-1` is inferred).
fn shape_of(dims: &[i64], count: usize) -> Result<Vec<usize>, String> {
    let known: usize = dims
        .iter()
        .filter(|d| **d >= 0)
        .map(|d| *d as usize)
        .product();
    let free = dims.iter().filter(|d| **d < 0).count();
    match free {
        0 if known == count => Ok(dims.iter().map(|d| *d as usize).collect()),
        1 if known > 0 && count.is_multiple_of(known) => Ok(dims
            .iter()
            .map(|d| if *d < 0 { count / known } else { *d as usize })
            .collect()),
        _ => Err(format!("{count} values do not make a {dims:?} tensor")),
    }
}

impl Mapping<'_> {
    /// Pushes the fields the layout picks for each input; `push` takes a field by its position
    /// (none when the row lacks it).
    fn push_fields(
        &self,
        columns: &mut [Column],
        push: impl Fn(&mut Column, Option<usize>) -> Result<(), String>,
    ) -> Result<(), String> {
        let inputs = &self.model.inputs;
        match self.layout {
            Some(Layout::Vector { fields }) => {
                for (i, at) in fields.iter().enumerate() {
                    push(&mut columns[0], Some(*at)).map_err(|e| {
                        format!("column {} of input '{}': {e}", i + 1, inputs[0].name)
                    })?;
                }
                Ok(())
            }
            Some(Layout::ByName { fields }) => {
                for ((input, column), at) in inputs.iter().zip(columns).zip(fields) {
                    push(column, *at).map_err(|e| format!("column '{}': {e}", input.name))?;
                }
                Ok(())
            }
            None => Err("a row without a CSV header or Parquet columns".into()),
        }
    }

    fn push_row(&self, row: &Row, columns: &mut [Column]) -> Result<(), String> {
        let inputs = &self.model.inputs;
        match &row.fields {
            Fields::Bad(why) => Err(why.clone()),
            Fields::V2(_) => Err("a V2 request among rows".into()),
            Fields::Values(values) => self.push_fields(columns, |column, at| {
                column.push_value(at.and_then(|a| values.get(a)).unwrap_or(&Value::Null))
            }),
            Fields::Csv(record) => self.push_fields(columns, |column, at| {
                column.push_raw(at.and_then(|a| record.get(a)).unwrap_or_default())
            }),
            Fields::Json(map) => {
                if let (Some(keys), [input]) = (self.columns, &inputs[..])
                    && !map.contains_key(&input.name)
                {
                    for key in keys {
                        let value = map.get(key).unwrap_or(&Json::Null);
                        columns[0]
                            .push(Cell::Json(value))
                            .map_err(|e| format!("field '{key}': {e}"))?;
                    }
                    return Ok(());
                }
                for (input, column) in inputs.iter().zip(columns) {
                    let value = map.get(&input.name).ok_or_else(|| {
                        format!("no field '{}' (an input of the model)", input.name)
                    })?;
                    column
                        .push(Cell::Json(value))
                        .map_err(|e| format!("field '{}': {e}", input.name))?;
                }
                Ok(())
            }
        }
    }

    /// Converts the rows of a chunk.
    pub fn encode(&self, rows: Vec<Row>) -> Encoded {
        if let [
            Row {
                fields: Fields::V2(request),
                ..
            },
        ] = &rows[..]
        {
            let key = RowKey {
                index: rows[0].index,
                id: rows[0].id.clone(),
            };
            return match v2_request(request) {
                Ok(request) => Encoded {
                    request: Some(request),
                    rows: vec![key],
                    failed: Vec::new(),
                    stacked: false,
                },
                Err(e) => Encoded {
                    request: None,
                    rows: Vec::new(),
                    failed: vec![(key, e)],
                    stacked: false,
                },
            };
        }
        let model = self.model;
        let stacked = model.stacks_rows();
        let mut columns: Vec<Column> = model
            .inputs
            .iter()
            .map(|i| {
                Column::new(
                    i.datatype,
                    rows.len() * fixed_width(model.row_dims(i)).unwrap_or(1),
                )
            })
            .collect();
        // Elements per row of each input: fixed by the model, or by the first good row.
        let mut widths: Vec<Option<usize>> = model
            .inputs
            .iter()
            .map(|i| fixed_width(model.row_dims(i)))
            .collect();
        let (mut good, mut failed) = (Vec::with_capacity(rows.len()), Vec::new());
        for row in rows {
            let key = RowKey {
                index: row.index,
                id: row.id.clone(),
            };
            let before: Vec<usize> = columns.iter().map(Column::len).collect();
            let mut result = self.push_row(&row, &mut columns);
            if result.is_ok() {
                for (i, input) in model.inputs.iter().enumerate() {
                    let n = columns[i].len() - before[i];
                    match widths[i] {
                        Some(w) if w != n => {
                            result = Err(format!(
                                "input '{}' takes {w} values per row, this row has {n}",
                                input.name
                            ));
                            break;
                        }
                        Some(_) => {}
                        None => widths[i] = Some(n),
                    }
                }
            }
            match result {
                Ok(()) => good.push(key),
                Err(e) => {
                    for (c, len) in columns.iter_mut().zip(before) {
                        c.truncate(len);
                    }
                    failed.push((key, e));
                }
            }
        }
        if good.is_empty() {
            return Encoded {
                request: None,
                rows: good,
                failed,
                stacked,
            };
        }
        let n = good.len();
        let mut inputs = Vec::with_capacity(columns.len());
        for ((spec, column), width) in model.inputs.iter().zip(columns).zip(widths) {
            match tensor(model, spec, column, width.unwrap_or(0), n, stacked) {
                Ok(t) => inputs.push(NamedTensor {
                    name: spec.name.clone(),
                    tensor: t,
                }),
                Err(e) => {
                    // A datatype range fault: the whole chunk goes to errors, row by row
                    // would repeat it.
                    failed.extend(good.drain(..).map(|k| (k, e.clone())));
                    return Encoded {
                        request: None,
                        rows: good,
                        failed,
                        stacked,
                    };
                }
            }
        }
        Encoded {
            request: Some(InferRequest {
                inputs,
                ..Default::default()
            }),
            rows: good,
            failed,
            stacked,
        }
    }
}

fn tensor(
    model: &ModelInfo,
    spec: &TensorSpec,
    column: Column,
    width: usize,
    rows: usize,
    stacked: bool,
) -> Result<Tensor, String> {
    let data = column
        .finish()
        .map_err(|e| format!("input '{}': {e}", spec.name))?;
    let row =
        shape_of(model.row_dims(spec), width).map_err(|e| format!("input '{}': {e}", spec.name))?;
    let shape = if stacked {
        [vec![rows], row].concat()
    } else {
        row
    };
    Tensor::new(shape, data).map_err(|e| format!("input '{}': {e}", spec.name))
}

/// A V2 inference request (one JSON line, as `mlserver infer` reads).
fn v2_request(request: &Json) -> Result<InferRequest, String> {
    let mut inputs = Vec::new();
    for input in request["inputs"].as_array().into_iter().flatten() {
        let name = input["name"].as_str().ok_or("an input without a name")?;
        let datatype: DataType = input["datatype"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|e| format!("input '{name}': {e}"))?;
        let shape: Vec<usize> = input["shape"]
            .as_array()
            .ok_or_else(|| format!("input '{name}' has no shape"))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("input '{name}': the shape must be non-negative integers"))?;
        let mut column = Column::new(datatype, 0);
        column
            .push(Cell::Json(&input["data"]))
            .map_err(|e| format!("input '{name}': {e}"))?;
        let data = column
            .finish()
            .map_err(|e| format!("input '{name}': {e}"))?;
        let tensor = Tensor::new(shape, data).map_err(|e| format!("input '{name}': {e}"))?;
        inputs.push(NamedTensor {
            name: name.to_string(),
            tensor,
        });
    }
    let outputs = request["outputs"].as_array().map(|o| {
        o.iter()
            .filter_map(|o| o["name"].as_str().map(str::to_string))
            .collect()
    });
    Ok(InferRequest {
        inputs,
        outputs,
        ..Default::default()
    })
}
