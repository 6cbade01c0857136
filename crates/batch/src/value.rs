//! One field of a row, as read (CSV text, a JSON value or a Parquet value), and its
//! conversion to a tensor element of the input's datatype.

use std::fmt;

use inferd_core::{DataType, TensorData};
use serde_json::Value as Json;

/// A field of a row.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    Text(&'a str),
    Json(&'a Json),
}

/// A typed value of a Parquet column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    /// A list of DOUBLE values without nulls.
    Floats(Vec<f64>),
    /// A list of FLOAT values without nulls, kept in their width (the feature vectors of
    /// most tables feed FP32 inputs as they are).
    Floats32(Vec<f32>),
    /// A struct, map, nested list or INT96 column, which no input takes.
    Unreadable,
}

impl Value {
    /// The value as an element of a floating-point input: null is NaN.
    fn as_float(&self) -> Option<f64> {
        match self {
            Value::Null => Some(f64::NAN),
            Value::Float(x) => Some(*x),
            Value::Int(x) => Some(*x as f64),
            _ => None,
        }
    }

    /// The value as a row id: text as it is, numbers printed; none for null.
    pub fn id(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            other => Some(other.to_string()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(x) => write!(f, "{x}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bytes(b) => write!(f, "'{}'", String::from_utf8_lossy(b)),
            Value::List(items) => write!(f, "a list of {} values", items.len()),
            Value::Floats(items) => write!(f, "a list of {} values", items.len()),
            Value::Floats32(items) => write!(f, "a list of {} values", items.len()),
            Value::Unreadable => f.write_str("a struct, map, nested list or INT96 value"),
        }
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

fn missing_bytes(b: &[u8]) -> bool {
    b.is_empty() || b.eq_ignore_ascii_case(b"nan") || b.eq_ignore_ascii_case(b"na") || b == b"null"
}

/// Elements of one input for a chunk of rows, typed as they are gathered.
pub enum Column {
    /// FP32, the common input: each value narrowed as it is pushed (as `finish` would).
    F32(Vec<f32>),
    /// FP16, BF16 and FP64.
    Float(Vec<f64>, DataType),
    Int(Vec<i64>, DataType),
    Uint(Vec<u64>, DataType),
    Bool(Vec<bool>),
    Bytes(Vec<Vec<u8>>),
}

fn missing(text: &str) -> bool {
    let t = text.trim();
    t.is_empty() || t.eq_ignore_ascii_case("nan") || t.eq_ignore_ascii_case("na") || t == "null"
}

impl Column {
    pub fn new(datatype: DataType, capacity: usize) -> Column {
        use DataType::*;
        match datatype {
            F32 => Column::F32(Vec::with_capacity(capacity)),
            F16 | BF16 | F64 => Column::Float(Vec::with_capacity(capacity), datatype),
            I8 | I16 | I32 | I64 => Column::Int(Vec::with_capacity(capacity), datatype),
            U8 | U16 | U32 | U64 => Column::Uint(Vec::with_capacity(capacity), datatype),
            Bool => Column::Bool(Vec::with_capacity(capacity)),
            Bytes => Column::Bytes(Vec::with_capacity(capacity)),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Column::F32(v) => v.len(),
            Column::Float(v, _) => v.len(),
            Column::Int(v, _) => v.len(),
            Column::Uint(v, _) => v.len(),
            Column::Bool(v) => v.len(),
            Column::Bytes(v) => v.len(),
        }
    }

    /// Appends a CSV cell (bytes not yet checked as UTF-8: numbers need not be). The hot path
    /// of feature tables: floats straight from the bytes.
    pub fn push_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        if let Column::F32(_) | Column::Float(..) = self {
            let b = trim(bytes);
            let x = if missing_bytes(b) {
                f64::NAN
            } else {
                fast_float2::parse::<f64, _>(b)
                    .map_err(|_| format!("'{}' is not a number", String::from_utf8_lossy(bytes)))?
            };
            self.push_float(x);
            return Ok(());
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| format!("'{}' is not UTF-8", String::from_utf8_lossy(bytes)))?;
        self.push(Cell::Text(text))
    }

    /// Appends a float; callers match a floating-point column first. Text and JSON numbers
    /// are read as f64 first, as the server reads JSON, so both round alike.
    fn push_float(&mut self, x: f64) {
        match self {
            Column::F32(v) => v.push(x as f32),
            Column::Float(v, _) => v.push(x),
            Column::Int(..) | Column::Uint(..) | Column::Bool(_) | Column::Bytes(_) => {}
        }
    }

    /// Appends one element; a list value appends each of its elements.
    pub fn push(&mut self, cell: Cell<'_>) -> Result<(), String> {
        if let Cell::Json(Json::Array(items)) = cell {
            for item in items {
                self.push(Cell::Json(item))?;
            }
            return Ok(());
        }
        match self {
            Column::F32(_) | Column::Float(..) => {
                let x = match cell {
                    Cell::Text(t) if missing(t) => f64::NAN,
                    Cell::Text(t) => t
                        .trim()
                        .parse()
                        .map_err(|_| format!("'{t}' is not a number"))?,
                    Cell::Json(Json::Null) => f64::NAN,
                    Cell::Json(j) => j.as_f64().ok_or_else(|| format!("{j} is not a number"))?,
                };
                self.push_float(x);
            }
            Column::Int(v, _) => v.push(match cell {
                Cell::Text(t) => t
                    .trim()
                    .parse()
                    .map_err(|_| format!("'{t}' is not an integer"))?,
                Cell::Json(j) => j.as_i64().ok_or_else(|| format!("{j} is not an integer"))?,
            }),
            Column::Uint(v, _) => v.push(match cell {
                Cell::Text(t) => t
                    .trim()
                    .parse()
                    .map_err(|_| format!("'{t}' is not an unsigned integer"))?,
                Cell::Json(j) => j
                    .as_u64()
                    .ok_or_else(|| format!("{j} is not an unsigned integer"))?,
            }),
            Column::Bool(v) => v.push(match cell {
                Cell::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(format!("'{t}' is not a boolean")),
                },
                Cell::Json(j) => j.as_bool().ok_or_else(|| format!("{j} is not a boolean"))?,
            }),
            Column::Bytes(v) => v.push(match cell {
                Cell::Text(t) => t.as_bytes().to_vec(),
                Cell::Json(Json::String(s)) => s.as_bytes().to_vec(),
                Cell::Json(j) => j.to_string().into_bytes(),
            }),
        }
        Ok(())
    }

    /// Appends a Parquet value (a list appends each element): numbers as JSON numbers are
    /// taken, text as a CSV cell.
    pub fn push_value(&mut self, value: &Value) -> Result<(), String> {
        match (self, value) {
            (column, Value::List(items)) => {
                for item in items {
                    column.push_value(item)?;
                }
            }
            (Column::F32(v), Value::Floats32(items)) => v.extend_from_slice(items),
            (Column::F32(v), Value::Floats(items)) => v.extend(items.iter().map(|x| *x as f32)),
            (Column::Float(v, _), Value::Floats(items)) => v.extend_from_slice(items),
            (Column::Float(v, _), Value::Floats32(items)) => {
                v.extend(items.iter().map(|x| f64::from(*x)));
            }
            (column, Value::Floats(items)) => {
                for x in items {
                    column.push_value(&Value::Float(*x))?;
                }
            }
            (column, Value::Floats32(items)) => {
                for x in items {
                    column.push_value(&Value::Float(f64::from(*x)))?;
                }
            }
            (Column::Bytes(v), Value::Bytes(b)) => v.push(b.clone()),
            (Column::Bytes(_), Value::Unreadable | Value::Null) => {
                return Err(format!("{value} is not text or bytes"));
            }
            (Column::Bytes(v), other) => v.push(other.to_string().into_bytes()),
            (column, Value::Bytes(b)) => column.push_raw(b)?,
            (column @ (Column::F32(_) | Column::Float(..)), other) => {
                let x = other
                    .as_float()
                    .ok_or_else(|| format!("{other} is not a number"))?;
                column.push_float(x);
            }
            (Column::Int(v, _), Value::Int(x)) => v.push(*x),
            (Column::Uint(v, _), Value::Int(x)) if *x >= 0 => v.push(*x as u64),
            (Column::Bool(v), Value::Bool(b)) => v.push(*b),
            (Column::Int(..), other) => return Err(format!("{other} is not an integer")),
            (Column::Uint(..), other) => {
                return Err(format!("{other} is not an unsigned integer"));
            }
            (Column::Bool(_), other) => return Err(format!("{other} is not a boolean")),
        }
        Ok(())
    }

    /// Drops elements past `len` (a row that failed half-way).
    pub fn truncate(&mut self, len: usize) {
        match self {
            Column::F32(v) => v.truncate(len),
            Column::Float(v, _) => v.truncate(len),
            Column::Int(v, _) => v.truncate(len),
            Column::Uint(v, _) => v.truncate(len),
            Column::Bool(v) => v.truncate(len),
            Column::Bytes(v) => v.truncate(len),
        }
    }

    /// The elements in the input's datatype (integers out of its range are refused).
    pub fn finish(self) -> Result<TensorData, String> {
        use DataType::*;
        fn ints<T: TryFrom<i64>>(v: Vec<i64>, dt: DataType) -> Result<Vec<T>, String> {
            v.into_iter()
                .map(|x| T::try_from(x).map_err(|_| format!("{x} does not fit {dt}")))
                .collect()
        }
        fn uints<T: TryFrom<u64>>(v: Vec<u64>, dt: DataType) -> Result<Vec<T>, String> {
            v.into_iter()
                .map(|x| T::try_from(x).map_err(|_| format!("{x} does not fit {dt}")))
                .collect()
        }
        Ok(match self {
            Column::F32(v) => TensorData::F32(v),
            Column::Float(v, F16) => {
                TensorData::F16(v.into_iter().map(half::f16::from_f64).collect())
            }
            Column::Float(v, BF16) => {
                TensorData::BF16(v.into_iter().map(half::bf16::from_f64).collect())
            }
            Column::Float(v, _) => TensorData::F64(v),
            Column::Int(v, I8) => TensorData::I8(ints(v, I8)?),
            Column::Int(v, I16) => TensorData::I16(ints(v, I16)?),
            Column::Int(v, I32) => TensorData::I32(ints(v, I32)?),
            Column::Int(v, _) => TensorData::I64(v),
            Column::Uint(v, U8) => TensorData::U8(uints(v, U8)?),
            Column::Uint(v, U16) => TensorData::U16(uints(v, U16)?),
            Column::Uint(v, U32) => TensorData::U32(uints(v, U32)?),
            Column::Uint(v, _) => TensorData::U64(v),
            Column::Bool(v) => TensorData::Bool(v),
            Column::Bytes(v) => TensorData::Bytes(v),
        })
    }
}
