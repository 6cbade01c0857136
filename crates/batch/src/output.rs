//! Output rows of a scored chunk: the row's index (or id), every output (scalars as they are,
//! vectors as `name_0..name_k` CSV columns or JSON lists) and the version that answered.

use inferd_core::TensorData;
use serde_json::Value as Json;

use crate::Format;
use crate::cell_text::{csv_text, integer, json_text, write_element};
use crate::encode::RowKey;
use crate::parquet_io::Table;
use crate::scorer::Scored;

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
            let mut version = Vec::new();
            csv_text(&mut version, scored.version.as_bytes());
            for (r, key) in keys.iter().enumerate() {
                match &key.id {
                    Some(id) => csv_text(&mut text, id.as_bytes()),
                    None => integer(&mut text, key.index),
                }
                for (_, data, per) in &outputs {
                    for k in 0..*per {
                        text.push(b',');
                        write_element(&mut text, data, r * per + k, false);
                    }
                }
                text.push(b',');
                text.extend_from_slice(&version);
                text.push(b'\n');
            }
        }
        Format::Parquet => return Err("Parquet rows are written by the Parquet sink".into()),
        Format::Jsonl => {
            let quoted = |name: &str| {
                let mut out = Vec::new();
                json_text(&mut out, name);
                out
            };
            let id_key = quoted(id_name);
            let names: Vec<Vec<u8>> = outputs.iter().map(|(name, ..)| quoted(name)).collect();
            let mut version = b",\"model_version\":".to_vec();
            json_text(&mut version, &scored.version);
            for (r, key) in keys.iter().enumerate() {
                text.push(b'{');
                text.extend_from_slice(&id_key);
                text.push(b':');
                match &key.id {
                    Some(id) => json_text(&mut text, id),
                    None => integer(&mut text, key.index),
                }
                for ((_, data, per), name) in outputs.iter().zip(&names) {
                    text.push(b',');
                    text.extend_from_slice(name);
                    text.push(b':');
                    let list = *per != 1 || !stacked;
                    if list {
                        text.push(b'[');
                    }
                    for k in 0..*per {
                        if k > 0 {
                            text.push(b',');
                        }
                        write_element(&mut text, data, r * per + k, true);
                    }
                    if list {
                        text.push(b']');
                    }
                }
                text.extend_from_slice(&version);
                text.extend_from_slice(b"}\n");
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
