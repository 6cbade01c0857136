//! A Parquet input file read with positioned reads: a page is one `pread` into a buffer of its
//! size. The parquet crate's reader for `File` duplicates the descriptor, seeks and reads
//! through an 8 KiB buffer that grows read by read, a dozen system calls per page; beside
//! the model's threads those calls cost more than decoding the page.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use parquet::file::reader::{ChunkReader, Length};

/// Page headers are small: reading them a few KiB at a time wastes little.
const HEADER_READ: usize = 4096;

pub struct PagedFile(Arc<File>);

impl PagedFile {
    pub fn new(file: File) -> PagedFile {
        PagedFile(Arc::new(file))
    }
}

impl Length for PagedFile {
    fn len(&self) -> u64 {
        self.0.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

impl ChunkReader for PagedFile {
    type T = BufReader<At>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<BufReader<At>> {
        Ok(BufReader::with_capacity(
            HEADER_READ,
            At {
                file: Arc::clone(&self.0),
                position: start,
            },
        ))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let mut buffer = vec![0; length];
        self.0.read_exact_at(&mut buffer, start)?;
        Ok(buffer.into())
    }
}

/// The file from a position on, read without moving the descriptor's offset.
pub struct At {
    file: Arc<File>,
    position: u64,
}

impl Read for At {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buffer, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}
