//! Audit segment files: `audit-<first seq>.jsonl`, one record a line, and beside each closed
//! segment an index, `….idx`: the ids' hashes sorted with each record's offset, so one id is
//! found among millions of records with a few reads per segment.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::AuditSettings;
use super::record::{GENESIS, line};

const INDEX_MAGIC: &[u8; 4] = b"IAX1";
const INDEX_HEADER: u64 = 4 + 8 + 8 + 8;

/// FNV-1a of an id: the index key.
fn key(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The segments of `dir`, oldest first.
pub fn segments(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".jsonl"))
        })
        .collect();
    found.sort();
    Ok(found)
}

fn index_path(segment: &Path) -> PathBuf {
    segment.with_extension("idx")
}

/// The id of a record line, cheaply (records begin with seq, prev, then id).
fn id_of(line: &str) -> Option<&str> {
    let start = line.find("\"id\":\"")? + 6;
    let end = start + line[start..].find('"')?;
    Some(&line[start..end])
}

/// Appends records to the current segment, rotating and pruning.
pub struct Writer {
    settings: AuditSettings,
    file: Option<BufWriter<File>>,
    path: PathBuf,
    size: u64,
    opened: Instant,
    seq: u64,
    prev: String,
    /// (id key, offset) of the current segment's records, for its index.
    entries: Vec<(u64, u64)>,
    first_ms: u64,
}

impl Writer {
    /// Continues the log in `settings.dir`: a new segment after the last one, chained to it.
    pub fn open(settings: &AuditSettings) -> Result<Writer, String> {
        let dir = &settings.dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the audit directory {}: {e}", dir.display()))?;
        let (mut seq, mut prev) = (0, GENESIS.to_string());
        if let Some(last) = segments(dir).map_err(|e| e.to_string())?.last() {
            if let Some((s, h)) =
                last_record(last).map_err(|e| format!("{}: {e}", last.display()))?
            {
                seq = s + 1;
                prev = h;
            }
            // A segment left without its index (the process was killed): give it one.
            if !index_path(last).exists() {
                write_index_of(last).map_err(|e| format!("indexing {}: {e}", last.display()))?;
            }
        }
        let mut writer = Writer {
            settings: settings.clone(),
            file: None,
            path: PathBuf::new(),
            size: 0,
            opened: Instant::now(),
            seq,
            prev,
            entries: Vec::new(),
            first_ms: 0,
        };
        writer.start_segment().map_err(|e| e.to_string())?;
        Ok(writer)
    }

    fn start_segment(&mut self) -> std::io::Result<()> {
        self.path = self
            .settings
            .dir
            .join(format!("audit-{:020}.jsonl", self.seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = Some(BufWriter::with_capacity(256 << 10, file));
        self.size = 0;
        self.opened = Instant::now();
        self.entries.clear();
        self.first_ms = now_ms();
        Ok(())
    }

    pub fn append(&mut self, body: &[u8]) -> std::io::Result<()> {
        if self.size > 0
            && (self.size >= self.settings.segment_bytes
                || self.opened.elapsed() >= self.settings.segment_age)
        {
            self.rotate()?;
        }
        let (line, hash) = line(self.seq, &self.prev, body);
        let id = std::str::from_utf8(body)
            .ok()
            .and_then(id_of)
            .unwrap_or_default();
        self.entries.push((key(id), self.size));
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the audit segment is closed"))?
            .write_all(&line)?;
        self.size += line.len() as u64;
        self.seq += 1;
        self.prev = hash;
        Ok(())
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        if let Some(file) = self.file.as_mut() {
            file.flush()?;
            file.get_ref().sync_data()?;
        }
        Ok(())
    }

    fn finish_segment(&mut self) -> std::io::Result<()> {
        self.sync()?;
        self.file = None;
        if self.size == 0 {
            let _ = std::fs::remove_file(&self.path);
            return Ok(());
        }
        self.entries.sort_unstable();
        write_index(
            &index_path(&self.path),
            &self.entries,
            self.first_ms,
            now_ms(),
        )
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.finish_segment()?;
        self.prune();
        self.start_segment()
    }

    /// Removes the oldest closed segments beyond the count and age kept.
    fn prune(&self) {
        let Ok(all) = segments(&self.settings.dir) else {
            return;
        };
        let closed: Vec<&PathBuf> = all.iter().filter(|p| **p != self.path).collect();
        let excess = self
            .settings
            .keep_segments
            .map_or(0, |keep| closed.len().saturating_sub(keep));
        for (i, segment) in closed.iter().enumerate() {
            let old = self.settings.keep_age.is_some_and(|age| {
                segment
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().unwrap_or(Duration::ZERO) > age)
            });
            if i < excess || old {
                tracing::info!(segment = %segment.display(), "audit segment removed by retention");
                let _ = std::fs::remove_file(index_path(segment));
                let _ = std::fs::remove_file(segment);
            }
        }
    }

    pub fn close(&mut self) -> std::io::Result<()> {
        self.finish_segment()
    }
}

fn write_index(
    path: &Path,
    entries: &[(u64, u64)],
    first_ms: u64,
    last_ms: u64,
) -> std::io::Result<()> {
    let tmp = path.with_extension("idx.tmp");
    let mut out = BufWriter::new(File::create(&tmp)?);
    out.write_all(INDEX_MAGIC)?;
    out.write_all(&(entries.len() as u64).to_le_bytes())?;
    out.write_all(&first_ms.to_le_bytes())?;
    out.write_all(&last_ms.to_le_bytes())?;
    for (k, offset) in entries {
        out.write_all(&k.to_le_bytes())?;
        out.write_all(&offset.to_le_bytes())?;
    }
    out.flush()?;
    out.get_ref().sync_data()?;
    drop(out);
    std::fs::rename(tmp, path)
}

/// Builds the index of a segment from its lines.
fn write_index_of(segment: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(File::open(segment)?);
    let (mut entries, mut offset, mut text) = (Vec::new(), 0u64, String::new());
    loop {
        text.clear();
        let n = reader.read_line(&mut text)?;
        if n == 0 {
            break;
        }
        entries.push((key(id_of(&text).unwrap_or_default()), offset));
        offset += n as u64;
    }
    entries.sort_unstable();
    let modified = segment
        .metadata()?
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    write_index(&index_path(segment), &entries, 0, modified)
}

/// The sequence number and hash of a segment's last record.
fn last_record(segment: &Path) -> std::io::Result<Option<(u64, String)>> {
    let mut file = File::open(segment)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    // Records are small; a generous tail holds the last one whole.
    let tail = len.min(1 << 20);
    file.seek(SeekFrom::Start(len - tail))?;
    let mut buf = Vec::with_capacity(tail as usize);
    file.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
        return Ok(None);
    };
    let value: serde_json::Value = serde_json::from_str(last)
        .map_err(|e| std::io::Error::other(format!("its last record is not JSON: {e}")))?;
    match (value["seq"].as_u64(), value["hash"].as_str()) {
        (Some(seq), Some(hash)) => Ok(Some((seq, hash.to_string()))),
        _ => Err(std::io::Error::other("its last record has no seq and hash")),
    }
}

/// What `find` looks for; every given field must match.
#[derive(Debug, Clone, Default)]
pub struct FindQuery {
    pub id: Option<String>,
    pub model: Option<String>,
    pub version: Option<String>,
    /// RFC 3339 bounds on `received_at` (inclusive).
    pub since: Option<String>,
    pub until: Option<String>,
}

impl FindQuery {
    fn matches(&self, record: &serde_json::Value) -> bool {
        let field = |name: &str| record[name].as_str().unwrap_or_default();
        self.id.as_deref().is_none_or(|id| field("id") == id)
            && self
                .model
                .as_deref()
                .is_none_or(|m| field("model_name") == m)
            && self
                .version
                .as_deref()
                .is_none_or(|v| field("model_version") == v)
            && self
                .since
                .as_deref()
                .is_none_or(|t| field("received_at") >= t)
            && self
                .until
                .as_deref()
                .is_none_or(|t| field("received_at") <= t)
    }
}

/// Records matching `query`, as their JSON lines, oldest first. With an id, indexed segments
/// are searched by their index.
pub fn find(dir: &Path, query: &FindQuery, mut out: impl FnMut(&str)) -> std::io::Result<u64> {
    let mut found = 0;
    for segment in segments(dir)? {
        let index = index_path(&segment);
        if let (Some(id), true) = (&query.id, index.exists()) {
            for offset in offsets(&index, key(id))? {
                let line = read_line_at(&segment, offset)?;
                if let Ok(record) = serde_json::from_str::<serde_json::Value>(&line)
                    && query.matches(&record)
                {
                    out(line.trim_end());
                    found += 1;
                }
            }
            continue;
        }
        let reader = BufReader::new(File::open(&segment)?);
        for line in reader.lines() {
            let line = line?;
            if let Some(id) = &query.id
                && id_of(&line) != Some(id.as_str())
            {
                continue;
            }
            if let Ok(record) = serde_json::from_str::<serde_json::Value>(&line)
                && query.matches(&record)
            {
                out(&line);
                found += 1;
            }
        }
    }
    Ok(found)
}

/// Offsets of the records whose id hashes to `k`: a binary search with one read per probe.
fn offsets(index: &Path, k: u64) -> std::io::Result<Vec<u64>> {
    let file = File::open(index)?;
    let mut header = [0u8; INDEX_HEADER as usize];
    file.read_exact_at(&mut header, 0)?;
    if &header[..4] != INDEX_MAGIC {
        return Err(std::io::Error::other(format!(
            "{} is not an audit index",
            index.display()
        )));
    }
    let count = u64::from_le_bytes(header[4..12].try_into().unwrap_or_default());
    let entry = |i: u64| -> std::io::Result<(u64, u64)> {
        let mut b = [0u8; 16];
        file.read_exact_at(&mut b, INDEX_HEADER + i * 16)?;
        Ok((
            u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
            u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
        ))
    };
    let (mut lo, mut hi) = (0, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if entry(mid)?.0 < k {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let mut out = Vec::new();
    while lo < count {
        let (key, offset) = entry(lo)?;
        if key != k {
            break;
        }
        out.push(offset);
        lo += 1;
    }
    Ok(out)
}

fn read_line_at(segment: &Path, offset: u64) -> std::io::Result<String> {
    let mut file = File::open(segment)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut line = String::new();
    BufReader::new(file).read_line(&mut line)?;
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> AuditSettings {
        AuditSettings {
            segment_bytes: 2_000,
            ..AuditSettings::new(dir)
        }
    }

    fn body(i: u64) -> Vec<u8> {
        format!(r#""id":"req-{i}","received_at":"2026-12-01T00:00:{:02}.000000Z","model_name":"m","model_version":"1""#, i % 60)
            .into_bytes()
    }

    #[test]
    fn records_rotate_chain_across_restarts_and_are_found_by_index() {
        let dir = std::env::temp_dir().join(format!("inferd-audit-seg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = Writer::open(&settings(&dir)).unwrap();
        for i in 0..100 {
            w.append(&body(i)).unwrap();
        }
        w.close().unwrap();
        // A second writer continues the sequence and the chain.
        let mut w = Writer::open(&settings(&dir)).unwrap();
        for i in 100..150 {
            w.append(&body(i)).unwrap();
        }
        w.close().unwrap();
        let all = segments(&dir).unwrap();
        assert!(all.len() > 3, "{all:?}");
        assert!(all.iter().all(|s| index_path(s).exists()));
        let mut hits = Vec::new();
        let q = FindQuery {
            id: Some("req-123".into()),
            ..Default::default()
        };
        assert_eq!(find(&dir, &q, |l| hits.push(l.to_string())).unwrap(), 1);
        let record: serde_json::Value = serde_json::from_str(&hits[0]).unwrap();
        assert_eq!(record["seq"], 123);
        let report = super::super::verify::verify(&dir).unwrap();
        assert_eq!(report.records, 150, "{report:?}");
        assert!(report.first_bad.is_none(), "{report:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
