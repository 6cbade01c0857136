//! Output rows of a scored chunk: the row's index (or id), every output (scalars as they are,
//! vectors as `name_0..name_k` CSV columns or JSON lists) and the version that answered.

use inferd_core::TensorData;
use serde_json::Value as Json;

use crate::Format;
use crate::encode::RowKey;
use crate::parquet_io::Table;
use crate::scorer::Scored;
use crate::value::write_element;

pub struct Formatted {
    pub text: Vec<u8>,
    /// CSV: the columns of these rows (the file's header when it is the first chunk).
    pub header: Vec<String>,
}

/// The output rows of `rows`, answered by `scored` (`stacked`: output tensors have one row per
/// input row along their first dimension).
pub fn rows(
    format: Format,
    id_name: &str,
    keys: &[RowKey],
    scored: &Scored,
    stacked: bool,
) -> Result<Formatted, String> {
    let n = keys.len();
    let mut outputs: Vec<(&str, TensorData, usize)> = Vec::with_capacity(scored.outputs.len());
    for o in &scored.outputs {
        let len = o.tensor.len();
        if stacked && o.tensor.shape().first() != Some(&n) {
            return Err(format!(
                "output '{}' has shape {:?}, not one row per input row ({n})",
                o.name,
                o.tensor.shape()
            ));
        }
        let per = if stacked { len / n.max(1) } else { len };
        outputs.push((&o.name, o.tensor.data(), per));
    }
    let mut header = vec![id_name.to_string()];
    for (name, _, per) in &outputs {
        if *per == 1 {
            header.push(name.to_string());
        } else {
            header.extend((0..*per).map(|k| format!("{name}_{k}")));
        }
    }
    header.push("model_version".into());
    let mut text = Vec::with_capacity(n * 64);
    match format {
        Format::Csv => {
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(&mut text);
            let mut record: Vec<String> = Vec::with_capacity(header.len());
            for (r, key) in keys.iter().enumerate() {
                record.clear();
                record.push(key.id.clone().unwrap_or_else(|| key.index.to_string()));
                for (_, data, per) in &outputs {
                    for k in 0..*per {
                        let mut cell = String::new();
                        write_element(&mut cell, data, r * per + k, false);
                        record.push(cell);
                    }
                }
                record.push(scored.version.clone());
                w.write_record(&record).map_err(|e| e.to_string())?;
            }
            w.flush().map_err(|e| e.to_string())?;
        }
        Format::Parquet => return Err("Parquet rows are written by the Parquet sink".into()),
        Format::Jsonl => {
            let mut line = String::new();
            for (r, key) in keys.iter().enumerate() {
                line.clear();
                line.push('{');
                line.push_str(&Json::String(id_name.to_string()).to_string());
                line.push(':');
                match &key.id {
                    Some(id) => line.push_str(&Json::String(id.clone()).to_string()),
                    None => line.push_str(&key.index.to_string()),
                }
                for (name, data, per) in &outputs {
                    line.push(',');
                    line.push_str(&Json::String(name.to_string()).to_string());
                    line.push(':');
                    if *per != 1 || !stacked {
                        line.push('[');
                    }
                    for k in 0..*per {
                        if k > 0 {
                            line.push(',');
                        }
                        write_element(&mut line, data, r * per + k, true);
                    }
                    if *per != 1 || !stacked {
                        line.push(']');
                    }
                }
                line.push_str(",\"model_version\":");
                line.push_str(&Json::String(scored.version.clone()).to_string());
                line.push_str("}\n");
                text.extend_from_slice(line.as_bytes());
            }
        }
    }
    Ok(Formatted { text, header })
}

/// One line of the errors file (JSON Lines): the row, its id, why it failed.
pub fn error_line(key: &RowKey, reason: &str) -> String {
    let mut o = serde_json::Map::new();
    o.insert("row".into(), key.index.into());
    if let Some(id) = &key.id {
        o.insert("id".into(), id.clone().into());
    }
    o.insert("error".into(), reason.into());
    let mut line = Json::Object(o).to_string();
    line.push('\n');
    line
}

/// The output rows of `keys` as columns, for a Parquet output.
pub fn table(keys: &[RowKey], scored: &Scored, stacked: bool) -> Result<Table, String> {
    let n = keys.len();
    let mut columns = Vec::with_capacity(scored.outputs.len());
    for o in &scored.outputs {
        if stacked && o.tensor.shape().first() != Some(&n) {
            return Err(format!(
                "output '{}' has shape {:?}, not one row per input row ({n})",
                o.name,
                o.tensor.shape()
            ));
        }
        let len = o.tensor.len();
        let per = if stacked { len / n.max(1) } else { len };
        columns.push((o.name.clone(), o.tensor.data(), per, stacked && per == 1));
    }
    Ok(Table {
        keys: keys.to_vec(),
        columns,
        version: scored.version.clone(),
    })
}
