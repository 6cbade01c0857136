//! A tensor's `datatype` and `shape` as V2 JSON (and the audit log) write them.

use inferd_core::DataType;
use serde_json::Value;

/// `tensor["datatype"]`, parsed.
pub fn datatype(tensor: &Value) -> Result<DataType, String> {
    tensor["datatype"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("{e}"))
}

/// `tensor["shape"]` as signed dimensions (`-1` for a variable one).
pub fn dims(tensor: &Value) -> Vec<i64> {
    tensor["shape"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

/// `tensor["shape"]` of a concrete tensor.
pub fn shape(tensor: &Value) -> Vec<usize> {
    dims(tensor)
        .into_iter()
        .map(|d| d.max(0) as usize)
        .collect()
}
