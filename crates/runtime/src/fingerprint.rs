//! Content fingerprints of model directories, so polling reloads what changed and nothing else.
//! A file is re-read only when its stat changed; its ctime changes on every write and cannot be
//! set back by tools like `cp -p` or `touch`, so a new content is always seen even when size and
//! mtime are kept, and a touched but unchanged file causes no reload.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};

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
    /// A fingerprint of every file under `dir` (relative names and contents), following links.
    pub fn of_dir(&mut self, dir: &Path) -> std::io::Result<u64> {
        let mut files = Vec::new();
        collect(dir, dir, 0, &mut files)?;
        files.sort();
        let mut hasher = DefaultHasher::new();
        for (relative, path) in files {
            relative.hash(&mut hasher);
            self.of_file(&path)?.hash(&mut hasher);
        }
        Ok(hasher.finish())
    }

    fn of_file(&mut self, path: &Path) -> std::io::Result<u64> {
        let stamp = Stamp::of(&std::fs::metadata(path)?);
        if let Some((known, hash)) = self.files.get(path)
            && *known == stamp
        {
            return Ok(*hash);
        }
        let hash = hash_contents(path)?;
        self.files.insert(path.to_path_buf(), (stamp, hash));
        Ok(hash)
    }

    /// Forgets files under `dir` (a model that left the repository).
    pub fn forget(&mut self, dir: &Path) {
        self.files.retain(|path, _| !path.starts_with(dir));
    }
}

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
        let mut fp = Fingerprints::default();
        let first = fp.of_dir(&dir).unwrap();
        // Same bytes rewritten (new mtime and ctime): same fingerprint.
        std::fs::write(dir.join("model.onnx"), b"weights-a").unwrap();
        assert_eq!(fp.of_dir(&dir).unwrap(), first);
        // Same size, different bytes: a new fingerprint.
        std::fs::write(dir.join("model.onnx"), b"weights-b").unwrap();
        let second = fp.of_dir(&dir).unwrap();
        assert_ne!(second, first);
        // A renamed file is a change too.
        std::fs::rename(dir.join("sub/extra"), dir.join("sub/other")).unwrap();
        assert_ne!(fp.of_dir(&dir).unwrap(), second);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
