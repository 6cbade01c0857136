//! The checkpoint next to an output: how many rows (in the shard's order) are in the output
//! and errors files, and how long those files were then. A resumed job truncates the files
//! to those lengths and skips those rows: nothing twice, nothing lost.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::BatchError;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// What the job is (model, inputs, shard, formats): a resume of another job is refused.
    pub job: String,
    pub rows: u64,
    pub errors: u64,
    pub output_bytes: u64,
    pub errors_bytes: u64,
    /// Parquet output: the part files closed (the rows above are all in them).
    #[serde(default)]
    pub parts: u64,
    /// Versions that answered so far.
    pub versions: Vec<String>,
}

pub fn path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".checkpoint");
    PathBuf::from(name)
}

impl Checkpoint {
    pub fn read(path: &Path) -> Result<Option<Checkpoint>, BatchError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| BatchError::io(path.display(), format!("unreadable checkpoint: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BatchError::io(path.display(), e)),
        }
    }

    /// Written beside and renamed: a kill leaves the old checkpoint or the new one.
    pub fn write(&self, path: &Path) -> Result<(), BatchError> {
        let tmp = path.with_extension("checkpoint.tmp");
        let bytes = serde_json::to_vec(self).map_err(|e| BatchError::io(path.display(), e))?;
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| BatchError::io(path.display(), e))
    }
}
