use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logs to stderr; the level comes from `INFERD_LOG` (e.g. `debug`, `inferd_runtime=trace`).
/// By default tract's opset warnings stay quiet: skl2onnx exports newer opsets than tract lists.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("INFERD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tract_onnx=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
