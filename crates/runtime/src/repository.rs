//! Reading the model repository layout: `<repo>/<model>/[config.toml]`, `<repo>/<model>/<version>/`.

use std::io;
use std::path::{Path, PathBuf};

/// A model directory found in the repository.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub name: String,
    pub path: PathBuf,
    /// Positive integer subdirectories, unsorted.
    pub versions: Vec<u64>,
}

/// Model directories in `repo`, sorted by name. Hidden entries and plain files are skipped.
pub fn scan(repo: &Path) -> io::Result<Vec<ModelDir>> {
    let mut models = Vec::new();
    for entry in std::fs::read_dir(repo)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        // is_dir follows symlinks: linked model and version directories are common (mounted volumes).
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        let versions = versions(&path)?;
        models.push(ModelDir {
            name,
            path,
            versions,
        });
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

fn versions(model_dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(model_dir)? {
        let entry = entry?;
        if !entry.path().is_dir() {
            continue;
        }
        if let Some(v) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u64>().ok())
            && v > 0
        {
            out.push(v);
        }
    }
    Ok(out)
}
