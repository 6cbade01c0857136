//! Reading the model repository layout: `<repo>/<model>/[config.toml]`, `<repo>/<model>/<version>/`.

use std::io;
use std::path::Path;

/// Names of the model directories in `repo`, sorted. Hidden entries and plain files are skipped.
pub fn scan(repo: &Path) -> io::Result<Vec<String>> {
    let mut models = Vec::new();
    for entry in std::fs::read_dir(repo)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // is_dir follows symlinks: linked model and version directories are common (mounted volumes).
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        models.push(name);
    }
    models.sort();
    Ok(models)
}

/// Positive integer subdirectories of a model directory, unsorted.
pub fn versions(model_dir: &Path) -> io::Result<Vec<u64>> {
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
