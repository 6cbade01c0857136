//! Parquet rows out, on the parquet crate's own column writers (no Arrow: a far smaller
//! build): row groups, vectors as LIST columns, written as part files and joined at the end.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use inferd_core::TensorData;
use parquet::basic::Type as PhysicalType;
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, DoubleType, FloatType, Int32Type, Int64Type,
};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::SchemaDescriptor;

use crate::BatchError;
use crate::encode::RowKey;

/// Output rows of a chunk, as columns.
pub struct Table {
    pub keys: Vec<RowKey>,
    /// (name, elements, elements per row, scalar per row)
    pub columns: Vec<(String, TensorData, usize, bool)>,
    pub version: String,
}

pub const ROW_GROUP: usize = 65_536;

/// Snappy; no dictionary for floating-point columns, whose scores are nearly all distinct
/// (the writer hashed every value before falling back to plain pages: most of the writer's
/// CPU). Labels, ids and the version keep theirs.
fn properties(schema: &SchemaDescriptor) -> WriterProperties {
    let mut builder =
        WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY);
    for column in schema.columns() {
        if matches!(
            column.physical_type(),
            PhysicalType::FLOAT | PhysicalType::DOUBLE
        ) {
            builder = builder.set_column_dictionary_enabled(column.path().clone(), false);
        }
    }
    builder.build()
}

fn physical(data: &TensorData) -> &'static str {
    match data {
        TensorData::F16(_) | TensorData::BF16(_) | TensorData::F32(_) => "float",
        TensorData::F64(_) => "double",
        TensorData::I64(_) | TensorData::U64(_) | TensorData::U32(_) => "int64",
        TensorData::Bool(_) => "boolean",
        TensorData::Bytes(_) => "binary",
        _ => "int32",
    }
}

/// A Parquet output, written a row group at a time into part files (`OUTPUT.parts/part-N`),
/// each a complete Parquet file once closed: a killed job keeps its closed parts (the
/// checkpoint counts them) and `--resume` goes on with the next. The parts are joined into
/// the output at the end by copying their column chunks (no decoding).
pub struct ParquetSink {
    dir: PathBuf,
    path: PathBuf,
    id_name: String,
    writer: Option<SerializedFileWriter<File>>,
    buffer: Vec<Table>,
    rows: usize,
    /// Parts closed so far; the open one is number `parts`.
    parts: u64,
    part_rows: usize,
}

/// The directory of an output's part files.
pub fn parts_dir(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".parts");
    PathBuf::from(name)
}

fn part_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("part-{n:06}.parquet"))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

impl ParquetSink {
    /// A sink for `output` that continues after `parts` closed parts (0 for a new job):
    /// parts numbered from there on (left by a killed run) are removed.
    pub fn new(output: &Path, id_name: &str, parts: u64) -> Result<ParquetSink, BatchError> {
        let dir = parts_dir(output);
        std::fs::create_dir_all(&dir).map_err(|e| BatchError::io(dir.display(), e))?;
        let entries = std::fs::read_dir(&dir).map_err(|e| BatchError::io(dir.display(), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let n = name
                .strip_prefix("part-")
                .and_then(|n| n.strip_suffix(".parquet"))
                .and_then(|n| n.parse::<u64>().ok());
            if n.is_none_or(|n| n >= parts) {
                std::fs::remove_file(entry.path())
                    .map_err(|e| BatchError::io(entry.path().display(), e))?;
            }
        }
        Ok(ParquetSink {
            path: part_path(&dir, parts),
            dir,
            id_name: id_name.to_string(),
            writer: None,
            buffer: Vec::new(),
            rows: 0,
            parts,
            part_rows: 0,
        })
    }

    /// Rows in the open part.
    pub fn part_rows(&self) -> usize {
        self.part_rows
    }

    /// Closes the open part (footer written, synced to disk); returns the parts closed.
    pub fn close_part(&mut self) -> Result<u64, BatchError> {
        self.flush()?;
        if let Some(writer) = self.writer.take() {
            let file = writer
                .into_inner()
                .map_err(|e| BatchError::io(self.path.display(), e))?;
            file.sync_all()
                .map_err(|e| BatchError::io(self.path.display(), e))?;
            self.parts += 1;
            self.part_rows = 0;
            self.path = part_path(&self.dir, self.parts);
        }
        Ok(self.parts)
    }

    fn schema(&self, first: &Table) -> Result<String, String> {
        let mut fields = Vec::new();
        for name in std::iter::once(&self.id_name).chain(first.columns.iter().map(|c| &c.0)) {
            if !valid_name(name) {
                return Err(format!(
                    "'{name}' cannot be a Parquet column name here (A-Z a-z 0-9 _ -)"
                ));
            }
        }
        let id_type = if first.keys.first().is_some_and(|k| k.id.is_some()) {
            "binary"
        } else {
            "int64"
        };
        let annotation = if id_type == "binary" { " (STRING)" } else { "" };
        fields.push(format!("required {id_type} {}{annotation};", self.id_name));
        for (name, data, _, scalar) in &first.columns {
            let t = physical(data);
            let string = if t == "binary" { " (STRING)" } else { "" };
            if *scalar {
                fields.push(format!("required {t} {name}{string};"));
            } else {
                fields.push(format!(
                    "required group {name} (LIST) {{ repeated group list {{ required {t} element{string}; }} }}"
                ));
            }
        }
        fields.push("required binary model_version (STRING);".into());
        Ok(format!("message scores {{ {} }}", fields.join(" ")))
    }

    pub fn push(&mut self, table: Table) -> Result<(), BatchError> {
        if table.keys.is_empty() {
            return Ok(());
        }
        if self.writer.is_none() {
            let schema = self.schema(&table).map_err(BatchError::Model)?;
            let schema = parquet::schema::parser::parse_message_type(&schema)
                .map_err(|e| BatchError::io(self.path.display(), e))?;
            let file =
                File::create(&self.path).map_err(|e| BatchError::io(self.path.display(), e))?;
            let schema = Arc::new(schema);
            let props = properties(&SchemaDescriptor::new(Arc::clone(&schema)));
            let writer = SerializedFileWriter::new(file, schema, Arc::new(props))
                .map_err(|e| BatchError::io(self.path.display(), e))?;
            self.writer = Some(writer);
        }
        self.rows += table.keys.len();
        self.part_rows += table.keys.len();
        self.buffer.push(table);
        if self.rows >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BatchError> {
        let (Some(writer), false) = (self.writer.as_mut(), self.buffer.is_empty()) else {
            return Ok(());
        };
        let err = |e: parquet::errors::ParquetError| BatchError::io(self.path.display(), e);
        let tables = std::mem::take(&mut self.buffer);
        self.rows = 0;
        let mut group = writer.next_row_group().map_err(err)?;
        let columns = tables[0].columns.len();
        // The id (or row number).
        if let Some(mut col) = group.next_column().map_err(err)? {
            if tables[0].keys[0].id.is_some() {
                let v: Vec<ByteArray> = tables
                    .iter()
                    .flat_map(|t| &t.keys)
                    .map(|k| ByteArray::from(k.id.clone().unwrap_or_default().into_bytes()))
                    .collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&v, None, None)
                    .map_err(err)?;
            } else {
                let v: Vec<i64> = tables
                    .iter()
                    .flat_map(|t| &t.keys)
                    .map(|k| k.index as i64)
                    .collect();
                col.typed::<Int64Type>()
                    .write_batch(&v, None, None)
                    .map_err(err)?;
            }
            col.close().map_err(err)?;
        }
        for c in 0..columns {
            let Some(mut col) = group.next_column().map_err(err)? else {
                break;
            };
            let scalar = tables[0].columns[c].3;
            let (mut def, mut rep) = (Vec::new(), Vec::new());
            if !scalar {
                for t in &tables {
                    let per = t.columns[c].2;
                    for _ in &t.keys {
                        for k in 0..per {
                            def.push(1);
                            rep.push(if k == 0 { 0 } else { 1 });
                        }
                        if per == 0 {
                            def.push(0);
                            rep.push(0);
                        }
                    }
                }
            }
            let (def, rep) = if scalar {
                (None, None)
            } else {
                (Some(&def[..]), Some(&rep[..]))
            };
            let parts = tables.iter().map(|t| &t.columns[c].1);
            match &tables[0].columns[c].1 {
                TensorData::F32(_) | TensorData::F16(_) | TensorData::BF16(_) => {
                    let v: Vec<f32> = parts.flat_map(floats32).collect();
                    col.typed::<FloatType>()
                        .write_batch(&v, def, rep)
                        .map_err(err)?;
                }
                TensorData::F64(_) => {
                    let v: Vec<f64> = parts
                        .flat_map(|d| match d {
                            TensorData::F64(v) => v.clone(),
                            _ => Vec::new(),
                        })
                        .collect();
                    col.typed::<DoubleType>()
                        .write_batch(&v, def, rep)
                        .map_err(err)?;
                }
                TensorData::Bool(_) => {
                    let v: Vec<bool> = parts
                        .flat_map(|d| match d {
                            TensorData::Bool(v) => v.clone(),
                            _ => Vec::new(),
                        })
                        .collect();
                    col.typed::<BoolType>()
                        .write_batch(&v, def, rep)
                        .map_err(err)?;
                }
                TensorData::Bytes(_) => {
                    let v: Vec<ByteArray> = parts
                        .flat_map(|d| match d {
                            TensorData::Bytes(v) => {
                                v.iter().map(|b| ByteArray::from(b.clone())).collect()
                            }
                            _ => Vec::new(),
                        })
                        .collect();
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, def, rep)
                        .map_err(err)?;
                }
                d if physical(d) == "int64" => {
                    let v: Vec<i64> = parts.flat_map(ints).collect();
                    col.typed::<Int64Type>()
                        .write_batch(&v, def, rep)
                        .map_err(err)?;
                }
                _ => {
                    let v: Vec<i32> = parts
                        .flat_map(|d| ints(d).into_iter().map(|x| x as i32))
                        .collect();
                    col.typed::<Int32Type>()
                        .write_batch(&v, def, rep)
                        .map_err(err)?;
                }
            }
            col.close().map_err(err)?;
        }
        if let Some(mut col) = group.next_column().map_err(err)? {
            let v: Vec<ByteArray> = tables
                .iter()
                .flat_map(|t| {
                    t.keys
                        .iter()
                        .map(|_| ByteArray::from(t.version.as_bytes().to_vec()))
                })
                .collect();
            col.typed::<ByteArrayType>()
                .write_batch(&v, None, None)
                .map_err(err)?;
            col.close().map_err(err)?;
        }
        group.close().map_err(err)?;
        Ok(())
    }

    /// Closes the last part and joins every part into `output`, in order; the parts go.
    /// An output without rows gets no file.
    pub fn finish(mut self, output: &Path) -> Result<(), BatchError> {
        self.close_part()?;
        let err = |e: parquet::errors::ParquetError| BatchError::io(output.display(), e);
        let mut writer: Option<SerializedFileWriter<File>> = None;
        for n in 0..self.parts {
            let path = part_path(&self.dir, n);
            let input = File::open(&path).map_err(|e| BatchError::io(path.display(), e))?;
            let reader = SerializedFileReader::new(
                input
                    .try_clone()
                    .map_err(|e| BatchError::io(path.display(), e))?,
            )
            .map_err(err)?;
            let metadata = reader.metadata();
            let writer = match &mut writer {
                Some(w) => w,
                None => {
                    let schema = metadata.file_metadata().schema_descr().root_schema_ptr();
                    let file =
                        File::create(output).map_err(|e| BatchError::io(output.display(), e))?;
                    let props = properties(metadata.file_metadata().schema_descr());
                    writer.insert(
                        SerializedFileWriter::new(file, schema, Arc::new(props)).map_err(err)?,
                    )
                }
            };
            for group in metadata.row_groups() {
                let mut out = writer.next_row_group().map_err(err)?;
                for column in group.columns() {
                    out.append_column(
                        &input,
                        parquet::column::writer::ColumnCloseResult {
                            bytes_written: column.compressed_size() as u64,
                            rows_written: group.num_rows() as u64,
                            metadata: column.clone(),
                            bloom_filter: None,
                            column_index: None,
                            offset_index: None,
                        },
                    )
                    .map_err(err)?;
                }
                out.close().map_err(err)?;
            }
        }
        if let Some(writer) = writer {
            let file = writer.into_inner().map_err(err)?;
            file.sync_all()
                .map_err(|e| BatchError::io(output.display(), e))?;
        }
        std::fs::remove_dir_all(&self.dir).map_err(|e| BatchError::io(self.dir.display(), e))?;
        Ok(())
    }
}

fn floats32(d: &TensorData) -> Vec<f32> {
    match d {
        TensorData::F32(v) => v.clone(),
        TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
        TensorData::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
        _ => Vec::new(),
    }
}

fn ints(d: &TensorData) -> Vec<i64> {
    match d {
        TensorData::I8(v) => v.iter().map(|x| *x as i64).collect(),
        TensorData::I16(v) => v.iter().map(|x| *x as i64).collect(),
        TensorData::I32(v) => v.iter().map(|x| *x as i64).collect(),
        TensorData::I64(v) => v.clone(),
        TensorData::U8(v) => v.iter().map(|x| *x as i64).collect(),
        TensorData::U16(v) => v.iter().map(|x| *x as i64).collect(),
        TensorData::U32(v) => v.iter().map(|x| *x as i64).collect(),
        TensorData::U64(v) => v.iter().map(|x| *x as i64).collect(),
        _ => Vec::new(),
    }
}
