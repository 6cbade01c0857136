use std::str::FromStr;

/// A file format of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A header row, then one row per line.
    Csv,
    /// One JSON object per line: a row (`{"input": value, ...}`) or a whole V2 inference
    /// request (as `mlserver infer` takes).
    Jsonl,
    /// Columns of a Parquet file; list columns feed vector inputs.
    Parquet,
}

impl Format {
    /// The format a path's extension names.
    pub fn of_path(path: &str) -> Option<Format> {
        let lower = path.to_ascii_lowercase();
        let lower = lower.strip_suffix(".gz").unwrap_or(&lower);
        if lower.ends_with(".csv") {
            Some(Format::Csv)
        } else if lower.ends_with(".parquet") || lower.ends_with(".pq") {
            Some(Format::Parquet)
        } else if lower.ends_with(".jsonl")
            || lower.ends_with(".ndjson")
            || lower.ends_with(".json")
        {
            Some(Format::Jsonl)
        } else {
            None
        }
    }

    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Format::Csv => &[".csv"],
            Format::Jsonl => &[".jsonl", ".ndjson", ".json"],
            Format::Parquet => &[".parquet", ".pq"],
        }
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
            "parquet" => Ok(Format::Parquet),
            other => Err(format!("unknown format '{other}' (csv, jsonl or parquet)")),
        }
    }
}
