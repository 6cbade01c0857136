//! Parquet rows in, through the parquet crate's column readers: each column is decoded a
//! page at a time into typed values, and rows are cut across the columns. (The crate's record
//! API builds a `Row` of boxed `Field`s per row, about ten times slower on wide numeric
//! tables.) Top-level primitive columns and LIST columns of primitives are read; a struct,
//! map or nested list column reads as [`Value::Unreadable`] and fails only the rows that use it.

use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use parquet::basic::{ConvertedType, LogicalType, Repetition};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, DataType, FixedLenByteArray};
use parquet::file::reader::{FileReader, RowGroupReader, SerializedFileReader};
use parquet::schema::types::{SchemaDescriptor, Type};

use crate::BatchError;
use crate::value::Value;

/// Rows cut at a time: large enough that a page decodes in a few calls, small enough that a
/// wide table's decoded values stay in cache.
const ROWS_AT_ONCE: usize = 1024;

/// Rows cut from the decoded columns at a time.
const CUT_BLOCK: usize = 32;

/// The top-level column names of a Parquet file.
pub fn columns(name: &str, path: &Path) -> Result<Vec<String>, BatchError> {
    let file = File::open(path).map_err(|e| BatchError::io(name, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| BatchError::io(name, e))?;
    let schema = reader.metadata().file_metadata().schema_descr();
    Ok(schema
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect())
}

/// The column names every input file has (they must all have the same).
pub fn header(files: &[(String, std::path::PathBuf)]) -> Result<Vec<String>, BatchError> {
    let mut first: Option<(&str, Vec<String>)> = None;
    for (name, path) in files {
        let these = columns(name, path)?;
        match &first {
            None => first = Some((name, these)),
            Some((other, names)) if *names != these => {
                return Err(BatchError::Usage(format!(
                    "{name} has other columns than {other}: {these:?} vs {names:?}"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|(_, names)| names).unwrap_or_default())
}

/// Reads `path` into `emit`, a row at a time: the row's id (the value of `id_column`) and its
/// values in column order (false from `emit` stops the reading).
pub fn read(
    name: &str,
    path: &Path,
    id_column: Option<&str>,
    bytes: &AtomicU64,
    before: u64,
    mut emit: impl FnMut(Option<String>, Vec<Value>) -> bool,
) -> Result<bool, BatchError> {
    let fail = |e: parquet::errors::ParquetError| BatchError::io(name, e);
    let file = File::open(path).map_err(|e| BatchError::io(name, e))?;
    let pages = crate::parquet_file::map(&file).map_err(|e| BatchError::io(name, e))?;
    let size = pages.len() as u64;
    let reader = SerializedFileReader::new(pages).map_err(fail)?;
    let metadata = reader.metadata();
    let schema = metadata.file_metadata().schema_descr();
    let total = metadata.file_metadata().num_rows().max(1) as u64;
    let fields = schema.root_schema().get_fields();
    let id_at = id_column.and_then(|c| fields.iter().position(|f| f.name() == c));
    let fields = fields.len();
    let mut done = 0u64;
    for group in 0..reader.num_row_groups() {
        let group_reader = reader.get_row_group(group).map_err(fail)?;
        let mut left = group_reader.metadata().num_rows() as usize;
        let mut columns = (0..fields)
            .map(|field| Column::open(schema, field, group_reader.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        while left > 0 {
            let rows = left.min(ROWS_AT_ONCE);
            for column in &mut columns {
                column.fill(rows).map_err(fail)?;
                if column.rows.done.len() < rows && !matches!(column.reader, Typed::Unreadable) {
                    return Err(BatchError::io(
                        name,
                        format!(
                            "column '{}' of row group {group} ends before its {} rows",
                            column.name,
                            group_reader.metadata().num_rows()
                        ),
                    ));
                }
            }
            // Cut in blocks, column by column, so that the rows being built and each column's
            // next values stay in cache (row by row across 256 columns missed on every value).
            let mut cut = 0;
            while cut < rows {
                let block = (rows - cut).min(CUT_BLOCK);
                let mut cut_rows: Vec<Vec<Value>> = (0..block)
                    .map(|_| Vec::with_capacity(columns.len()))
                    .collect();
                for column in &mut columns {
                    column.take(&mut cut_rows);
                }
                for row in cut_rows {
                    let id = id_at.and_then(|at| row.get(at)).and_then(Value::id);
                    if !emit(id, row) {
                        return Ok(false);
                    }
                }
                cut += block;
            }
            left -= rows;
            done += rows as u64;
            // In u128: a file's size times its rows can pass u64.
            let read = (u128::from(size) * u128::from(done) / u128::from(total)) as u64;
            bytes.store(before + read, Ordering::Relaxed);
        }
    }
    Ok(true)
}

/// A column reader of the physical types the batch job reads.
enum Typed {
    Bool(ColumnReaderImpl<parquet::data_type::BoolType>),
    Int32(ColumnReaderImpl<parquet::data_type::Int32Type>),
    Int64(ColumnReaderImpl<parquet::data_type::Int64Type>),
    Float(ColumnReaderImpl<parquet::data_type::FloatType>),
    Double(ColumnReaderImpl<parquet::data_type::DoubleType>),
    Bytes(ColumnReaderImpl<parquet::data_type::ByteArrayType>),
    Fixed(ColumnReaderImpl<parquet::data_type::FixedLenByteArrayType>),
    Unreadable,
}

/// One top-level column of a row group: its reader and the rows decoded but not yet cut.
struct Column {
    name: String,
    reader: Typed,
    rows: Rows,
}

/// Records assembled from a column's levels and values.
struct Rows {
    max_def: i16,
    max_rep: i16,
    /// Definition level at which a list has an element (its repeated node is present).
    element_def: i16,
    done: VecDeque<Value>,
    /// The list being assembled, until the next record starts.
    open: Option<List>,
    /// Elements of the last list: the next one's capacity.
    last_len: usize,
    defs: Vec<i16>,
    reps: Vec<i16>,
    exhausted: bool,
}

impl Column {
    fn open(
        schema: &SchemaDescriptor,
        field: usize,
        group: &dyn RowGroupReader,
    ) -> parquet::errors::Result<Column> {
        let leaves: Vec<usize> = (0..schema.num_columns())
            .filter(|leaf| schema.get_column_root_idx(*leaf) == field)
            .collect();
        let root = &schema.root_schema().get_fields()[field];
        let mut column = Column {
            name: root.name().to_string(),
            reader: Typed::Unreadable,
            rows: Rows {
                max_def: 0,
                max_rep: 0,
                element_def: 0,
                done: VecDeque::new(),
                open: None,
                last_len: 0,
                defs: Vec::new(),
                reps: Vec::new(),
                exhausted: true,
            },
        };
        let [leaf] = leaves[..] else {
            return Ok(column);
        };
        let descriptor = schema.column(leaf);
        let list = root.get_basic_info().converted_type() == ConvertedType::LIST
            || matches!(
                root.get_basic_info().logical_type_ref(),
                Some(LogicalType::List)
            );
        if descriptor.max_rep_level() > 1 || (root.is_group() && !list) {
            return Ok(column);
        }
        column.rows.max_def = descriptor.max_def_level();
        column.rows.max_rep = descriptor.max_rep_level();
        column.rows.element_def = element_def(root, &descriptor.path().parts()[1..]);
        column.rows.exhausted = false;
        column.reader = match group.get_column_reader(leaf)? {
            ColumnReader::BoolColumnReader(r) => Typed::Bool(r),
            ColumnReader::Int32ColumnReader(r) => Typed::Int32(r),
            ColumnReader::Int64ColumnReader(r) => Typed::Int64(r),
            ColumnReader::FloatColumnReader(r) => Typed::Float(r),
            ColumnReader::DoubleColumnReader(r) => Typed::Double(r),
            ColumnReader::ByteArrayColumnReader(r) => Typed::Bytes(r),
            ColumnReader::FixedLenByteArrayColumnReader(r) => Typed::Fixed(r),
            // Legacy INT96 timestamps: no tensor datatype takes them.
            ColumnReader::Int96ColumnReader(_) => {
                column.rows.exhausted = true;
                Typed::Unreadable
            }
        };
        Ok(column)
    }

    /// Decodes until `rows` records are complete or the column chunk ends.
    fn fill(&mut self, rows: usize) -> parquet::errors::Result<()> {
        while self.rows.done.len() < rows && !self.rows.exhausted {
            let want = rows - self.rows.done.len();
            let levels = match &mut self.reader {
                Typed::Bool(r) => self.rows.decode(r, want, |b| Value::Bool(*b), refuse)?,
                Typed::Int32(r) => {
                    self.rows
                        .decode(r, want, |x| Value::Int(i64::from(*x)), refuse)?
                }
                Typed::Int64(r) => self.rows.decode(r, want, |x| Value::Int(*x), refuse)?,
                Typed::Float(r) => {
                    self.rows
                        .decode(r, want, |x| Value::Float(f64::from(*x)), extend_plain)?
                }
                Typed::Double(r) => {
                    self.rows
                        .decode(r, want, |x| Value::Float(*x), extend_plain)?
                }
                Typed::Bytes(r) => self.rows.decode(
                    r,
                    want,
                    |b: &ByteArray| Value::Bytes(b.data().to_vec()),
                    refuse,
                )?,
                Typed::Fixed(r) => self.rows.decode(
                    r,
                    want,
                    |b: &FixedLenByteArray| Value::Bytes(b.data().to_vec()),
                    refuse,
                )?,
                Typed::Unreadable => 0,
            };
            if levels == 0 {
                self.rows.end();
            }
        }
        Ok(())
    }

    /// Appends this column's next value to each of `rows` (an unreadable column has one for
    /// every row).
    fn take(&mut self, rows: &mut [Vec<Value>]) {
        if let Typed::Unreadable = self.reader {
            rows.iter_mut().for_each(|row| row.push(Value::Unreadable));
            return;
        }
        let n = rows.len().min(self.rows.done.len());
        for (row, value) in rows.iter_mut().zip(self.rows.done.drain(..n)) {
            row.push(value);
        }
        rows[n..].iter_mut().for_each(|row| row.push(Value::Null));
    }
}

impl Rows {
    /// One read of up to `records` records; the levels read (0 at the end of the chunk).
    /// `extend` appends a run of present elements to a list of plain floats (floating-point
    /// columns, whose lists are the feature vectors of most tables), or refuses it.
    fn decode<T: DataType>(
        &mut self,
        reader: &mut ColumnReaderImpl<T>,
        records: usize,
        value: impl Fn(&T::T) -> Value,
        extend: impl Fn(&mut List, &[T::T], usize) -> bool,
    ) -> parquet::errors::Result<usize> {
        // Room for as many elements per record as the last list had (no regrowth per read),
        // within reason: one huge list must not size every later read.
        let mut values = Vec::with_capacity((records * self.last_len.max(1)).min(1 << 20));
        self.defs.clear();
        self.reps.clear();
        let defs = (self.max_def > 0).then_some(&mut self.defs);
        let reps = (self.max_rep > 0).then_some(&mut self.reps);
        let (_, _, levels) = reader.read_records(records, defs, reps, &mut values)?;
        let (mut next, mut i) = (0, 0);
        while i < levels {
            let def = if self.max_def > 0 {
                self.defs[i]
            } else {
                self.max_def
            };
            if self.max_rep == 0 {
                let v = match values.get(next) {
                    Some(x) if def == self.max_def => {
                        next += 1;
                        value(x)
                    }
                    _ => Value::Null,
                };
                self.done.push_back(v);
                i += 1;
                continue;
            }
            if self.reps[i] == 0
                && let Some(list) = self.open.replace(List::Empty)
            {
                self.finish(list);
            }
            let Some(list) = &mut self.open else {
                i += 1;
                continue;
            };
            if def == self.max_def {
                // This element and those after it in the same list, none null.
                let more = self.reps[i + 1..levels]
                    .iter()
                    .zip(&self.defs[i + 1..levels])
                    .take_while(|(rep, def)| **rep != 0 && **def == self.max_def)
                    .count();
                let run = (1 + more).min(values.len() - next.min(values.len()));
                if run == 0 {
                    i += 1;
                    continue;
                }
                let elements = &values[next..next + run];
                if !extend(list, elements, self.last_len) {
                    elements.iter().for_each(|x| list.push(value(x)));
                }
                next += run;
                i += run;
                continue;
            } else if def >= self.element_def {
                list.push(Value::Null);
            } else if def < self.element_def - 1 {
                *list = List::Null;
            }
            i += 1;
        }
        Ok(levels)
    }

    /// The column chunk ended: the open list is complete.
    fn end(&mut self) {
        self.exhausted = true;
        if let Some(list) = self.open.take() {
            self.finish(list);
        }
    }

    fn finish(&mut self, list: List) {
        let value = list.into_value();
        match &value {
            Value::Floats(v) => self.last_len = v.len(),
            Value::Floats32(v) => self.last_len = v.len(),
            _ => {}
        }
        self.done.push_back(value);
    }
}

/// Elements of a column whose lists are never plain floats.
fn refuse<T>(_: &mut List, _: &[T], _: usize) -> bool {
    false
}

/// The elements of a floating-point column, kept in their own width.
trait PlainFloat: Copy {
    fn floats(list: &mut List) -> Option<&mut Vec<Self>>;
    fn list(floats: Vec<Self>) -> List;
}

impl PlainFloat for f32 {
    fn floats(list: &mut List) -> Option<&mut Vec<f32>> {
        match list {
            List::Floats32(v) => Some(v),
            _ => None,
        }
    }
    fn list(floats: Vec<f32>) -> List {
        List::Floats32(floats)
    }
}

impl PlainFloat for f64 {
    fn floats(list: &mut List) -> Option<&mut Vec<f64>> {
        match list {
            List::Floats(v) => Some(v),
            _ => None,
        }
    }
    fn list(floats: Vec<f64>) -> List {
        List::Floats(floats)
    }
}

/// Appends `run` to a list of plain floats (an empty list becomes one, with room for
/// `capacity`); false for a list that already holds other values.
fn extend_plain<F: PlainFloat>(list: &mut List, run: &[F], capacity: usize) -> bool {
    if let List::Empty = list {
        *list = F::list(Vec::with_capacity(capacity.max(run.len())));
    }
    match F::floats(list) {
        Some(floats) => {
            floats.extend_from_slice(run);
            true
        }
        None => false,
    }
}

/// A list being assembled: plain floats while every element is one.
enum List {
    /// No element yet.
    Empty,
    Floats(Vec<f64>),
    Floats32(Vec<f32>),
    Values(Vec<Value>),
    Null,
}

impl List {
    /// Appends an element that is not a plain float: the list holds values from here on.
    fn push(&mut self, value: Value) {
        match self {
            List::Values(values) => values.push(value),
            List::Floats(floats) => {
                let mut values: Vec<Value> = floats.drain(..).map(Value::Float).collect();
                values.push(value);
                *self = List::Values(values);
            }
            List::Floats32(floats) => {
                let mut values: Vec<Value> = floats
                    .drain(..)
                    .map(|x| Value::Float(f64::from(x)))
                    .collect();
                values.push(value);
                *self = List::Values(values);
            }
            List::Empty | List::Null => *self = List::Values(vec![value]),
        }
    }

    fn into_value(self) -> Value {
        match self {
            List::Empty => Value::Floats(Vec::new()),
            List::Floats(floats) => Value::Floats(floats),
            List::Floats32(floats) => Value::Floats32(floats),
            List::Values(values) => Value::List(values),
            List::Null => Value::Null,
        }
    }
}

/// The definition level at which the repeated node on `path` below `root` is present: each
/// optional or repeated node on the way adds one.
fn element_def(root: &Type, path: &[String]) -> i16 {
    let mut level = 0;
    let mut node = root;
    let mut rest = path.iter();
    loop {
        let info = node.get_basic_info();
        let repetition = if info.has_repetition() {
            info.repetition()
        } else {
            Repetition::REQUIRED
        };
        if repetition != Repetition::REQUIRED {
            level += 1;
        }
        if repetition == Repetition::REPEATED {
            return level;
        }
        let Some(next) = rest.next().filter(|_| node.is_group()) else {
            return level;
        };
        match node.get_fields().iter().find(|f| f.name() == next.as_str()) {
            Some(child) => node = child,
            None => return level,
        }
    }
}
