//! What the job needs to know of the model: its inputs and outputs per row, and whether
//! rows can be stacked into one request.

use inferd_core::TensorSpec;

/// A model as its scorer describes it.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    /// `max_batch_size`: 0 when the model has no batch dimension.
    pub max_batch_size: u32,
    /// Dimensions of one request (with the batch dimension only when `max_batch_size` is 0).
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl ModelInfo {
    /// Whether several rows go into one request: the model batches, or its first dimension
    /// is variable even without `max_batch_size` (many ONNX exports).
    pub fn stacks_rows(&self) -> bool {
        self.max_batch_size > 0 || self.inputs.iter().all(|i| i.dims.first() == Some(&-1))
    }

    /// The dimensions of one row of `input` (the batch dimension removed when rows stack).
    pub fn row_dims<'a>(&self, input: &'a TensorSpec) -> &'a [i64] {
        if self.max_batch_size == 0 && self.stacks_rows() {
            &input.dims[1..]
        } else {
            &input.dims
        }
    }

    /// Rows per request: `max_batch_size`, or what the caller asks for when rows stack freely.
    pub fn rows_per_request(&self, wanted: Option<usize>) -> usize {
        match (self.max_batch_size, self.stacks_rows()) {
            (0, false) => 1,
            (0, true) => wanted.unwrap_or(256).max(1),
            (max, _) => wanted.unwrap_or(max as usize).clamp(1, max as usize),
        }
    }
}

/// How a row's fields feed the model's inputs.
#[derive(Debug, Clone)]
pub enum Layout {
    /// The model's one input, from these fields in this order (the feature columns).
    Vector { fields: Vec<usize> },
    /// Each input from the field of its name (CSV or Parquet column).
    ByName { fields: Vec<Option<usize>> },
}

impl Layout {
    /// From a CSV header or a Parquet file's columns: by name when every input has a column
    /// of its name, else the one input from `columns` (default: all but `id_column`). With
    /// `lists`, a field may hold several values (Parquet LIST columns): the number of values
    /// is then checked per row rather than here.
    pub fn for_fields(
        model: &ModelInfo,
        header: &[String],
        columns: Option<&[String]>,
        id_column: Option<&str>,
        lists: bool,
    ) -> Result<Layout, String> {
        let find = |name: &str| header.iter().position(|h| h == name);
        if columns.is_none() && model.inputs.iter().all(|i| find(&i.name).is_some()) {
            return Ok(Layout::ByName {
                fields: model.inputs.iter().map(|i| find(&i.name)).collect(),
            });
        }
        if model.inputs.len() != 1 {
            let names: Vec<&str> = model.inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(format!(
                "model '{}' has inputs {names:?}: the header needs a column of each name",
                model.name
            ));
        }
        let fields = match columns {
            Some(cols) => cols
                .iter()
                .map(|c| find(c).ok_or_else(|| format!("no column '{c}' in the header")))
                .collect::<Result<Vec<_>, _>>()?,
            None => (0..header.len())
                .filter(|i| Some(header[*i].as_str()) != id_column)
                .collect(),
        };
        let input = &model.inputs[0];
        let width: i64 = model.row_dims(input).iter().product();
        if !lists && width > 0 && width as usize != fields.len() {
            return Err(format!(
                "input '{}' takes {width} values per row ({:?}) but {} columns are selected",
                input.name,
                model.row_dims(input),
                fields.len()
            ));
        }
        Ok(Layout::Vector { fields })
    }
}
