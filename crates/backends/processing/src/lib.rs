//! Pre- and post-processing steps as models, natively (no Python step): a Hugging Face
//! tokenizer (`tokenizer.json`: text in, token ids out) and post-processing of scores
//! (softmax, sigmoid, argmax, top-K with labels, thresholds). Both are ordinary models of the
//! repository, so they serve alone or as pipeline steps, batched like any other.

mod postprocess;
mod tokenizer;

pub use postprocess::PostprocessBackend;
pub use tokenizer::TokenizerBackend;

/// A model's text lines (a labels file), as BYTES elements.
pub(crate) fn read_lines(path: &std::path::Path) -> Result<Vec<String>, String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_string).collect())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}
