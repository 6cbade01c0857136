//! `--model-name`: serve one model, as KServe's single-model runtimes do. The model directory
//! may be the repository itself, laid out as KServe's storage initializer leaves `/mnt/models`
//! (`1/model.onnx`, or the model's files with no version directory), or a model of a
//! repository. The runtime gets a repository of its own that holds only that model: a
//! directory of symbolic links, so nothing is copied and a changed file is seen (poll mode).

use std::path::{Path, PathBuf};

/// A repository holding only `name`, made in `under`; returns its path.
pub fn view(repository: &Path, name: &str, under: &Path) -> Result<PathBuf, String> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') {
        return Err(format!("--model-name '{name}' is not a model name"));
    }
    let entries = list(repository)?;
    let has_versions = entries
        .iter()
        .any(|(n, dir)| *dir && n.parse::<u64>().is_ok_and(|v| v > 0));
    let has_files = entries
        .iter()
        .any(|(n, dir)| !*dir && n != inferd_core::CONFIG_FILE);
    let root = under.join(format!("inferd-model-{}", std::process::id()));
    if root.exists() {
        std::fs::remove_dir_all(&root)
            .map_err(|e| format!("cannot clear {}: {e}", root.display()))?;
    }
    let model = root.join(name);
    let made = |path: &Path| {
        std::fs::create_dir_all(path).map_err(|e| format!("cannot make {}: {e}", path.display()))
    };
    let link = |target: &Path, at: &Path| {
        std::os::unix::fs::symlink(target, at)
            .map_err(|e| format!("cannot link {} to {}: {e}", at.display(), target.display()))
    };
    let repository =
        std::path::absolute(repository).map_err(|e| format!("{}: {e}", repository.display()))?;
    if has_versions {
        // The directory is the model: <dir>/1/..., <dir>/config.toml.
        made(&root)?;
        link(&repository, &model)?;
    } else if repository.join(name).is_dir() {
        // A repository: only this model of it.
        made(&root)?;
        link(&repository.join(name), &model)?;
    } else if has_files {
        // The model's files alone: they are version 1.
        made(&model)?;
        link(&repository, &model.join("1"))?;
        let config = repository.join(inferd_core::CONFIG_FILE);
        if config.is_file() {
            link(&config, &model.join(inferd_core::CONFIG_FILE))?;
        }
    } else {
        return Err(format!(
            "--model-name {name}: {} is neither a model directory (version directories, or the \
             model's files) nor a repository holding {name}/",
            repository.display()
        ));
    }
    Ok(root)
}

/// Names in `dir`, each with whether it is a directory; hidden entries left out.
fn list(dir: &Path) -> Result<Vec<(String, bool)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            out.push((name, entry.path().is_dir()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("inferd-single-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn each_layout_becomes_a_repository_of_one_model() {
        let views = tmp("views");
        // KServe's storage initializer left the files alone in the directory.
        let flat = tmp("flat");
        std::fs::write(flat.join("model.onnx"), b"x").unwrap();
        std::fs::write(flat.join("config.toml"), b"max_batch_size = 4\n").unwrap();
        let repo = view(&flat, "iris", &views).unwrap();
        assert!(repo.join("iris/1/model.onnx").is_file());
        assert!(repo.join("iris/config.toml").is_file());
        // A versioned model directory.
        let versioned = tmp("versioned");
        std::fs::create_dir_all(versioned.join("3")).unwrap();
        std::fs::write(versioned.join("3/model.onnx"), b"x").unwrap();
        let repo = view(&versioned, "m", &views).unwrap();
        assert!(repo.join("m/3/model.onnx").is_file());
        // A repository: only the named model.
        let repository = tmp("repository");
        for model in ["a", "b"] {
            std::fs::create_dir_all(repository.join(model).join("1")).unwrap();
        }
        let repo = view(&repository, "b", &views).unwrap();
        let names: Vec<_> = list(&repo).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["b"]);
        let err = view(&repository, "c", &views).unwrap_err();
        assert!(err.contains("nor a repository holding c/"), "{err}");
        assert!(view(&repository, "../x", &views).is_err());
    }
}
