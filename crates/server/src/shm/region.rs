//! One registered system shared memory region: a POSIX shared memory object (`shm_open`)
//! mapped read/write. The client process writes and reads the same pages, so the server never
//! makes a Rust reference into them: every access is a bounds-checked copy through the raw
//! pointer.

use std::ffi::CString;

use bytes::Bytes;

/// A mapped `[offset, offset + byte_size)` of a shared memory object.
#[derive(Debug)]
pub struct Region {
    pub name: String,
    pub key: String,
    pub offset: u64,
    pub byte_size: u64,
    /// Start of the mapping (page-aligned, at or before `offset` in the object).
    base: *mut u8,
    map_len: usize,
    /// Where the region starts in the mapping (`offset` minus its page-aligned floor).
    skip: usize,
}

// SAFETY: the mapping lives until Drop and is only touched through bounds-checked copies;
// concurrent copies into it are the client's contract, as in Triton, and never race with
// Rust references (none are made).
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

impl Region {
    /// Opens `key` and maps the region; refuses one past the end of the object.
    pub fn map(name: &str, key: &str, offset: u64, byte_size: u64) -> Result<Region, String> {
        let c_key = CString::new(key)
            .map_err(|_| format!("shared memory key '{key}' contains a NUL byte"))?;
        // SAFETY: c_key is a valid C string; the descriptor is closed below on every path.
        let fd = unsafe { libc::shm_open(c_key.as_ptr(), libc::O_RDWR, 0) };
        if fd < 0 {
            return Err(format!(
                "unable to open shared memory region '{name}' with key '{key}': {}",
                errno()
            ));
        }
        let mapped = Self::map_fd(fd, name, key, offset, byte_size);
        // SAFETY: fd is ours; the mapping stays valid after the descriptor is closed.
        unsafe { libc::close(fd) };
        mapped
    }

    fn map_fd(
        fd: libc::c_int,
        name: &str,
        key: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<Region, String> {
        // SAFETY: stat is plain data, filled by fstat.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut stat) } != 0 {
            return Err(format!("unable to stat shared memory '{key}': {}", errno()));
        }
        let object_size = stat.st_size as u64;
        let end = offset.checked_add(byte_size);
        if byte_size == 0 || end.is_none_or(|end| end > object_size) {
            return Err(format!(
                "shared memory region '{name}': offset {offset} + byte_size {byte_size} is past \
                 the end of '{key}', which is {object_size} bytes"
            ));
        }
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        let aligned = offset - offset % page;
        let skip = (offset - aligned) as usize;
        let map_len = usize::try_from(byte_size)
            .ok()
            .and_then(|n| n.checked_add(skip))
            .ok_or_else(|| format!("shared memory region '{name}' is too large to map"))?;
        // SAFETY: a fresh shared mapping of a range checked to lie inside the object.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                aligned as libc::off_t,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!(
                "unable to map shared memory region '{name}' ('{key}'): {}",
                errno()
            ));
        }
        Ok(Region {
            name: name.to_string(),
            key: key.to_string(),
            offset,
            byte_size,
            base: base.cast(),
            map_len,
            skip,
        })
    }

    /// Checks that `[at, at + len)` lies inside the region.
    pub fn check(&self, at: u64, len: u64) -> Result<(), String> {
        self.range(at, len).map(|_| ())
    }

    /// Checks that `[at, at + len)` lies inside the region; returns the start in the mapping.
    fn range(&self, at: u64, len: u64) -> Result<usize, String> {
        match at.checked_add(len) {
            Some(end) if end <= self.byte_size => Ok(self.skip + at as usize),
            _ => Err(format!(
                "shared memory region '{}' is {} bytes; offset {at} + byte_size {len} is past its end",
                self.name, self.byte_size
            )),
        }
    }

    /// A copy of `len` bytes at `at` in the region.
    pub fn read(&self, at: u64, len: u64) -> Result<Bytes, String> {
        let start = self.range(at, len)?;
        let mut out = vec![0u8; len as usize];
        // SAFETY: start + len lies inside the mapping (checked by `range`); `out` is ours.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(start), out.as_mut_ptr(), out.len()) };
        Ok(Bytes::from(out))
    }

    /// Writes `chunks`, one after the other, at `at` in the region.
    pub fn write(&self, at: u64, chunks: &[Bytes]) -> Result<(), String> {
        let len: usize = chunks.iter().map(Bytes::len).sum();
        let mut start = self.range(at, len as u64)?;
        for chunk in chunks {
            // SAFETY: the whole run lies inside the mapping (checked by `range` above).
            unsafe {
                std::ptr::copy_nonoverlapping(chunk.as_ptr(), self.base.add(start), chunk.len())
            };
            start += chunk.len();
        }
        Ok(())
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: base/map_len are the mapping made in `map`; nothing refers to it any more
        // (requests hold the region by Arc, so this runs after the last one).
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared memory object of `size` bytes, unlinked when dropped.
    struct Object(CString);

    impl Object {
        fn new(key: &str, size: usize) -> Object {
            let c = CString::new(key).unwrap();
            unsafe {
                let fd = libc::shm_open(c.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o600);
                assert!(fd >= 0);
                assert_eq!(libc::ftruncate(fd, size as libc::off_t), 0);
                libc::close(fd);
            }
            Object(c)
        }
    }

    impl Drop for Object {
        fn drop(&mut self) {
            unsafe { libc::shm_unlink(self.0.as_ptr()) };
        }
    }

    #[test]
    fn reads_and_writes_inside_bounds_at_unaligned_offsets() {
        let key = format!("/inferd-region-test-{}", std::process::id());
        let _object = Object::new(&key, 10_000);
        let a = Region::map("a", &key, 4099, 100).unwrap();
        let b = Region::map("b", &key, 4000, 200).unwrap();
        a.write(1, &[Bytes::from_static(b"he"), Bytes::from_static(b"llo")])
            .unwrap();
        // The same bytes seen through another mapping of the object.
        assert_eq!(&b.read(100, 5).unwrap()[..], b"hello");
        assert!(a.read(96, 5).unwrap_err().contains("past its end"));
        assert!(a.write(99, &[Bytes::from_static(b"xy")]).is_err());
        assert!(a.read(u64::MAX, 2).is_err());
    }

    #[test]
    fn refuses_regions_past_the_object_and_unknown_keys() {
        let key = format!("/inferd-region-size-{}", std::process::id());
        let _object = Object::new(&key, 64);
        let err = Region::map("r", &key, 32, 64).unwrap_err();
        assert!(
            err.contains("past the end") && err.contains("64 bytes"),
            "{err}"
        );
        let err = Region::map("r", "/inferd-no-such-key", 0, 8).unwrap_err();
        assert!(err.contains("unable to open"), "{err}");
    }
}
