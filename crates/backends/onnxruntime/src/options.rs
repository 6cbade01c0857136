//! Session options from config.toml's `[parameters]`.

use std::path::Path;

use inferd_core::ModelConfig;
use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda(i32),
}

#[derive(Debug)]
pub struct Options {
    intra_op_threads: usize,
    level: GraphOptimizationLevel,
    providers: Vec<Provider>,
}

impl Options {
    pub fn from_config(config: &ModelConfig) -> Result<Options, String> {
        let intra_op_threads =
            match config.parameter("intra_op_threads") {
                None => 1,
                Some(n) => n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("intra_op_threads must be a positive integer, got {n}")
                })?,
            };
        let level = match config.parameter("graph_optimization_level").as_deref() {
            None | Some("all") => GraphOptimizationLevel::Level3,
            Some("extended") => GraphOptimizationLevel::Level2,
            Some("basic") => GraphOptimizationLevel::Level1,
            Some("disable") => GraphOptimizationLevel::Disable,
            Some(other) => {
                return Err(format!(
                    "graph_optimization_level '{other}': use disable, basic, extended or all"
                ));
            }
        };
        let providers = match config.parameter("execution_providers") {
            None => vec![Provider::Cpu],
            Some(list) => parse_providers(&list)?,
        };
        Ok(Options {
            intra_op_threads,
            level,
            providers,
        })
    }

    pub fn session(&self, environment: &Environment, path: &Path) -> Result<Session, String> {
        let mut builder = Session::builder(environment)
            .map_err(|e| e.to_string())?
            .with_optimization_level(self.level)
            .map_err(|e| e.to_string())?
            .with_intra_threads(self.intra_op_threads)
            .map_err(|e| e.to_string())?
            .with_inter_threads(1)
            .map_err(|e| e.to_string())?;
        let mut dispatch = Vec::new();
        for provider in &self.providers {
            match provider {
                Provider::Cpu => dispatch.push(ep::CPU::default().build()),
                Provider::Cuda(device) => {
                    if ep::CUDA::is_available().unwrap_or(false) {
                        dispatch.push(ep::CUDA::default().with_device_id(*device).build());
                    } else {
                        tracing::warn!(
                            path = %path.display(),
                            device,
                            "the CUDA execution provider is not available in this ONNX Runtime \
                             library (the CPU wheel, or no GPU); running on the CPU"
                        );
                    }
                }
            }
        }
        builder = builder
            .with_execution_providers(dispatch)
            .map_err(|e| e.to_string())?;
        builder
            .commit_from_file(path)
            .map_err(|e| format!("ONNX Runtime cannot load the model: {e}"))
    }
}

/// `"cuda:1,cpu"`, `"cuda"` (device 0) or `"cpu"`.
fn parse_providers(list: &str) -> Result<Vec<Provider>, String> {
    list.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|p| p.trim().trim_matches('"').to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once(':') {
            None if p == "cpu" => Ok(Provider::Cpu),
            None if p == "cuda" => Ok(Provider::Cuda(0)),
            Some(("cuda", id)) => id
                .parse()
                .map(Provider::Cuda)
                .map_err(|_| format!("execution provider '{p}': the device id must be a number")),
            _ => Err(format!(
                "unknown execution provider '{p}'; inferd knows cpu and cuda[:device]"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_parse() {
        assert_eq!(
            parse_providers("cuda:1, cpu").unwrap(),
            [Provider::Cuda(1), Provider::Cpu]
        );
        assert_eq!(
            parse_providers(r#"["cuda", "cpu"]"#).unwrap(),
            [Provider::Cuda(0), Provider::Cpu]
        );
        assert!(
            parse_providers("tpu")
                .unwrap_err()
                .contains("unknown execution provider")
        );
    }
}
