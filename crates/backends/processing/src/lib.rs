//! Pre- and post-processing steps as models, natively (no Python step): a Hugging Face
//! tokenizer (`tokenizer.json`: text in, token ids out) and post-processing of scores
//! (softmax, sigmoid, argmax, top-K with labels, thresholds). Both are ordinary models of the
//! repository, so they serve alone or as pipeline steps, batched like any other.

mod postprocess;
mod tokenizer;

pub use postprocess::PostprocessBackend;
pub use tokenizer::TokenizerBackend;
