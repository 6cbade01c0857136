//! `inferd audit verify`: every record's hash matches its content, every record chains to the
//! one before it, sequence numbers follow each other; the first record that breaks any of it
//! is named (segment, line, sequence number and id).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::record::{GENESIS, sha256_hex, split_hash};
use super::segment::segments;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub segment: PathBuf,
    /// 1-based.
    pub line: u64,
    pub seq: Option<u64>,
    pub id: Option<String>,
    pub problem: String,
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} line {}", self.segment.display(), self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq}")?;
            if let Some(id) = &self.id {
                write!(f, ", id {id}")?;
            }
            write!(f, ")")?;
        }
        write!(f, ": {}", self.problem)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub segments: usize,
    pub records: u64,
    pub first_bad: Option<BadRecord>,
}

/// Checks every segment of `dir`, oldest first. A log whose oldest segments were pruned by
/// retention starts its chain at the first record kept.
pub fn verify(dir: &Path) -> std::io::Result<Report> {
    let mut report = Report::default();
    let mut prev: Option<(u64, String)> = None;
    for segment in segments(dir)? {
        report.segments += 1;
        let reader = std::io::BufReader::new(std::fs::File::open(&segment)?);
        for (i, line) in reader.split(b'\n').enumerate() {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            let bad = |seq: Option<u64>, id: Option<String>, problem: String| BadRecord {
                segment: segment.clone(),
                line: i as u64 + 1,
                seq,
                id,
                problem,
            };
            let parsed: Option<serde_json::Value> = serde_json::from_slice(&line).ok();
            let seq = parsed.as_ref().and_then(|v| v["seq"].as_u64());
            let id = parsed
                .as_ref()
                .and_then(|v| v["id"].as_str().map(str::to_string));
            let problem = match (&parsed, split_hash(&line)) {
                (None, _) => Some("not a JSON record (changed or cut)".to_string()),
                (_, None) => Some("has no hash of its own".to_string()),
                (Some(v), Some((hashed, carried))) => {
                    let computed = sha256_hex(&hashed);
                    let chained = v["prev"].as_str().unwrap_or_default();
                    if computed != carried {
                        Some("its content does not match its hash (changed)".to_string())
                    } else if let Some((p_seq, p_hash)) = &prev {
                        if seq != Some(p_seq + 1) {
                            Some(format!("sequence {} follows {p_seq}", seq.unwrap_or(0)))
                        } else if chained != p_hash {
                            Some("it does not chain to the record before it".to_string())
                        } else {
                            None
                        }
                    } else if seq == Some(0) && chained != GENESIS {
                        Some("the first record does not start the chain".to_string())
                    } else {
                        None
                    }
                }
            };
            if let Some(problem) = problem {
                report.first_bad = Some(bad(seq, id, problem));
                return Ok(report);
            }
            report.records += 1;
            let hash = parsed
                .as_ref()
                .and_then(|v| v["hash"].as_str())
                .unwrap_or_default();
            prev = Some((seq.unwrap_or(0), hash.to_string()));
        }
    }
    Ok(report)
}
