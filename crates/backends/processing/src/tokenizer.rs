//! `backend = "tokenizer"`: a version directory with a `tokenizer.json` (as the Python
//! `tokenizers` library saves it). Input `text` BYTES [batch, 1]; outputs `input_ids`,
//! `attention_mask` (and `token_type_ids` when the tokenizer's post-processor sets type ids)
//! INT64 [batch, seq]. `[parameters]`: `padding = "longest" | "max_length"`, `max_length`,
//! `truncation`, `add_special_tokens`: the same as the Python library's settings, so the ids
//! are what its `encode_batch` gives. With padding "longest" a dynamic batch is padded to its
//! longest text; "max_length" makes every answer independent of batching.

use std::path::Path;

use inferd_core::{
    Backend, BackendError, DataType, LoadedModel, ModelConfig, ModelSignature, Tensor, TensorData,
    TensorSpec,
};
use tokenizers::{
    PaddingParams, PaddingStrategy, PostProcessorWrapper, Tokenizer, TruncationParams,
};

pub struct TokenizerBackend;

const FILE: &str = "tokenizer.json";

impl Backend for TokenizerBackend {
    fn name(&self) -> &'static str {
        "tokenizer"
    }

    fn platform(&self) -> &'static str {
        "tokenizer"
    }

    fn accepts(&self, version_dir: &Path, _config: &ModelConfig) -> bool {
        version_dir.join(FILE).is_file()
    }

    fn load(
        &self,
        version_dir: &Path,
        config: &ModelConfig,
    ) -> Result<Box<dyn LoadedModel>, BackendError> {
        let path = version_dir.join(FILE);
        let fail = |reason: String| BackendError::Load {
            path: path.clone(),
            reason,
        };
        let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| fail(e.to_string()))?;
        let flag = |key: &str, default: bool| -> Result<bool, BackendError> {
            match config.parameter(key).as_deref() {
                None => Ok(default),
                Some("true") => Ok(true),
                Some("false") => Ok(false),
                Some(other) => Err(fail(format!("parameter {key} = {other}: true or false"))),
            }
        };
        let max_length = match config.parameter("max_length") {
            None => None,
            Some(n) => Some(
                n.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| fail(format!("max_length = {n}: a positive number")))?,
            ),
        };
        let padding = config.parameter("padding");
        let strategy = match (padding.as_deref(), max_length) {
            (None | Some("longest"), _) => PaddingStrategy::BatchLongest,
            (Some("max_length"), Some(n)) => PaddingStrategy::Fixed(n),
            (Some("max_length"), None) => {
                return Err(fail("padding = \"max_length\" needs max_length".into()));
            }
            (Some(other), _) => {
                return Err(fail(format!(
                    "padding = \"{other}\": \"longest\" or \"max_length\""
                )));
            }
        };
        // The file's own padding settings (pad token, side) stay; answers are rectangular, so
        // there is always padding.
        let mut pad = tokenizer
            .get_padding()
            .cloned()
            .unwrap_or_else(|| PaddingParams {
                pad_id: tokenizer.token_to_id("[PAD]").unwrap_or(0),
                ..PaddingParams::default()
            });
        pad.strategy = strategy;
        tokenizer.with_padding(Some(pad));
        if flag("truncation", max_length.is_some())? {
            let max_length = max_length
                .or_else(|| tokenizer.get_truncation().map(|t| t.max_length))
                .ok_or_else(|| fail("truncation needs max_length".into()))?;
            let params = TruncationParams {
                max_length,
                ..tokenizer.get_truncation().cloned().unwrap_or_default()
            };
            tokenizer
                .with_truncation(Some(params))
                .map_err(|e| fail(e.to_string()))?;
        }
        let add_special_tokens = flag("add_special_tokens", true)?;
        let type_ids = matches!(
            tokenizer.get_post_processor(),
            Some(PostProcessorWrapper::Bert(_) | PostProcessorWrapper::Template(_))
        );
        let ids = |name: &str| TensorSpec::new(name, DataType::I64, vec![-1, -1]);
        let mut outputs = vec![ids("input_ids"), ids("attention_mask")];
        if type_ids {
            outputs.push(ids("token_type_ids"));
        }
        Ok(Box::new(TokenizerModel {
            tokenizer,
            add_special_tokens,
            signature: ModelSignature {
                inputs: vec![TensorSpec::new("text", DataType::Bytes, vec![-1, 1])],
                outputs,
            },
        }))
    }
}

struct TokenizerModel {
    tokenizer: Tokenizer,
    add_special_tokens: bool,
    signature: ModelSignature,
}

fn texts(inputs: &[Tensor]) -> Result<Vec<String>, String> {
    let Some(TensorData::Bytes(items)) = inputs.first().map(Tensor::data) else {
        return Err("input 'text' must be BYTES".into());
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, b)| String::from_utf8(b).map_err(|e| format!("text {i} is not UTF-8: {e}")))
        .collect()
}

impl LoadedModel for TokenizerModel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), String> {
        texts(inputs).map(|_| ())
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let texts = texts(&inputs).map_err(BackendError::Inference)?;
        let rows = texts.len();
        let encodings = self
            .tokenizer
            .encode_batch(texts, self.add_special_tokens)
            .map_err(|e| BackendError::Inference(format!("tokenizing: {e}")))?;
        let seq = encodings.first().map_or(0, |e| e.get_ids().len());
        let column = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Result<Tensor, BackendError> {
            let mut out = Vec::with_capacity(rows * seq);
            for e in &encodings {
                out.extend(f(e).iter().map(|&v| v as i64));
            }
            Tensor::new(vec![rows, seq], TensorData::I64(out)).map_err(BackendError::Inference)
        };
        let mut outputs = vec![
            column(&|e| e.get_ids())?,
            column(&|e| e.get_attention_mask())?,
        ];
        if self.signature.outputs.len() == 3 {
            outputs.push(column(&|e| e.get_type_ids())?);
        }
        Ok(outputs)
    }
}
