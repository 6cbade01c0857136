//! A Parquet input file mapped into memory: pages are slices of the mapping, read by the
//! kernel on first touch. Reading each page with `pread` copied it into a fresh buffer, and
//! beside the model's threads those copies took ~4% of a job's CPU (half of its reader's).

use std::fs::File;

use bytes::Bytes;

/// The whole of `file`, mapped read-only.
pub fn map(file: &File) -> std::io::Result<Bytes> {
    if file.metadata()?.len() == 0 {
        // A mapping cannot be empty; the Parquet reader refuses the file as too short.
        return Ok(Bytes::new());
    }
    // SAFETY: the mapping is only read. A file truncated by another process while the job
    // reads it ends the job with SIGBUS instead of an error; inputs are not meant to change
    // under a job, and `--resume` continues one that was stopped.
    let map = unsafe { memmap2::Mmap::map(file) }?;
    // Pages are read once, front to back: read ahead and drop them behind.
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(Bytes::from_owner(map))
}
