//! Content fingerprints of model directories, so polling reloads what changed and nothing else.
//! A file is re-read only when its stat changed; its ctime changes on every write and cannot be
//! set back by tools like `cp -p` or `touch`, so a new content is always seen even when size and
//! mtime are kept, and a touched but unchanged file causes no reload.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Directories deeper than this are not followed (guards against symlink cycles).
const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    changed: (i64, i64),
    #[cfg(unix)]
    inode: (u64, u64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            changed: (meta.ctime(), meta.ctime_nsec()),
            #[cfg(unix)]
            inode: (meta.dev(), meta.ino()),
        }
    }
}

/// Content hashes of files, by path, with the stat they were computed for.
#[derive(Default)]
pub struct Fingerprints {
    files: HashMap<PathBuf, (Stamp, u64)>,
}

impl Fingerprints {
    /// Forgets files under `dir` (a model that left the repository).
    pub fn forget(&mut self, dir: &Path) {
        self.files.retain(|path, _| !path.starts_with(dir));
    }
}

/// A fingerprint of every file under `dir` (relative names and contents), following links.
/// The cache is locked only to look up and store: files are hashed outside the lock, so one
/// model's large files do not hold up another's.
pub fn of_dir(cache: &Mutex<Fingerprints>, dir: &Path) -> std::io::Result<u64> {
    let mut files = Vec::new();
    collect(dir, dir, 0, &mut files)?;
    files.sort();
    let mut hasher = DefaultHasher::new();
    for (relative, path) in files {
        relative.hash(&mut hasher);
        of_file(cache, &path)?.hash(&mut hasher);
    }
    Ok(hasher.finish())
}

fn of_file(cache: &Mutex<Fingerprints>, path: &Path) -> std::io::Result<u64> {
    let lock = || cache.lock().unwrap_or_else(|e| e.into_inner());
    let meta = std::fs::metadata(path)?;
    let stamp = Stamp::of(&meta);
    if let Some((known, hash)) = lock().files.get(path)
        && *known == stamp
    {
        return Ok(*hash);
    }
    let hash = hash_contents(path)?;
    // A file written within the last second may be written again within the same timestamp
    // tick: hash it again next time rather than trust its stamp.
    let settled = changed_age(&meta).is_some_and(|age| age >= SETTLED);
    if settled {
        lock().files.insert(path.to_path_buf(), (stamp, hash));
    }
    Ok(hash)
}

/// Time since the file's inode last changed (ctime; mtime where there is none).
fn changed_age(meta: &std::fs::Metadata) -> Option<std::time::Duration> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let changed = std::time::UNIX_EPOCH
            + std::time::Duration::new(
                u64::try_from(meta.ctime()).ok()?,
                u32::try_from(meta.ctime_nsec()).ok()?,
            );
        changed.elapsed().ok()
    }
    #[cfg(not(unix))]
    {
        meta.modified().ok()?.elapsed().ok()
    }
}

/// Age after which a file's stat is trusted to change with its content.
const SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

fn collect(
    root: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Vec<(PathBuf, PathBuf)>,
) -> std::io::Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        // metadata follows links: linked files and directories count as what they point to.
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            collect(root, &path, depth + 1, out)?;
        } else if meta.is_file() {
            let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            out.push((relative, path));
        }
    }
    Ok(())
}

fn hash_contents(path: &Path) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_with_content_not_with_touch() {
        let dir = std::env::temp_dir().join(format!("inferd-fp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("model.onnx"), b"weights-a").unwrap();
        std::fs::write(dir.join("sub/extra"), b"x").unwrap();
        let fp = Mutex::new(Fingerprints::default());
        let first = of_dir(&fp, &dir).unwrap();
        // Same bytes rewritten (new mtime and ctime): same fingerprint.
        std::fs::write(dir.join("model.onnx"), b"weights-a").unwrap();
        assert_eq!(of_dir(&fp, &dir).unwrap(), first);
        // Same size, different bytes: a new fingerprint.
        std::fs::write(dir.join("model.onnx"), b"weights-b").unwrap();
        let second = of_dir(&fp, &dir).unwrap();
        assert_ne!(second, first);
        // A renamed file is a change too.
        std::fs::rename(dir.join("sub/extra"), dir.join("sub/other")).unwrap();
        assert_ne!(of_dir(&fp, &dir).unwrap(), second);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
