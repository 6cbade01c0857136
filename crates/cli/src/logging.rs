//! The process's subscriber: log lines on stderr (text or JSON) under a filter that can change
//! at run time (`/v2/logging`), and, with an OTLP endpoint, trace export of the spans with the
//! `inferd::trace` target. The two have separate filters: changing the log level never turns
//! trace spans into log lines, and tracing never costs the log path anything.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::ValueEnum;

use crate::log_buffer::{Buffered, LogBuffer};
use inferd_server::{LogControl, TRACE_TARGET};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// By default tract's opset warnings stay quiet: skl2onnx exports newer opsets than tract lists.
pub const DEFAULT_FILTER: &str = "info,tract_onnx=error";

/// The installed subscriber's handles: the log filter to change and the trace exporter to flush.
pub struct Logging {
    filter: Mutex<String>,
    handle: reload::Handle<EnvFilter, Registry>,
    format: LogFormat,
    traces: Option<SdkTracerProvider>,
    lines: Arc<LogBuffer>,
}

impl LogControl for Logging {
    fn filter(&self) -> String {
        self.filter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_filter(&self, filter: &str) -> Result<(), String> {
        let parsed = EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
        self.handle.reload(parsed).map_err(|e| e.to_string())?;
        *self.filter.lock().unwrap_or_else(|e| e.into_inner()) = filter.to_string();
        Ok(())
    }

    fn format(&self) -> &'static str {
        match self.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl Logging {
    /// Sends the spans and writes the log lines still buffered (at shutdown).
    pub fn flush(&self) {
        if let Some(traces) = &self.traces
            && let Err(e) = traces.shutdown()
        {
            eprintln!("inferd: flushing traces failed: {e}");
        }
        self.lines.flush();
    }
}

/// Installs the subscriber; lines are written in batches every `buffer` (0: at once). With
/// `otlp`, must run inside the Tokio runtime (the exporter's gRPC channel lives there).
pub fn init(
    format: LogFormat,
    filter: &str,
    otlp: Option<&str>,
    buffer: Duration,
) -> Result<Arc<Logging>, String> {
    let parsed = EnvFilter::try_new(filter).map_err(|e| format!("--log-level '{filter}': {e}"))?;
    // A filter of the log lines alone, reloadable; trace spans have their own below.
    let (filter_layer, handle) = reload::Layer::<EnvFilter, Registry>::new(parsed);
    let buffer = LogBuffer::start(buffer)?;
    // Colour only for a terminal: escape codes in collected log files are noise.
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(Buffered(Arc::clone(&buffer)))
        .with_ansi(std::io::stderr().is_terminal());
    let lines = match format {
        LogFormat::Text => lines.with_filter(filter_layer).boxed(),
        LogFormat::Json => lines.json().with_filter(filter_layer).boxed(),
    };
    let traces = otlp.map(tracer_provider).transpose()?;
    let export = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("inferd"))
            // Busy/idle time per span costs a clock read on every enter and exit.
            .with_tracked_inactivity(false)
            .with_filter(Targets::new().with_target(TRACE_TARGET, Level::TRACE))
    });
    tracing_subscriber::registry()
        .with(lines)
        .with(export)
        .try_init()
        .map_err(|e| format!("cannot install the log subscriber: {e}"))?;
    Ok(Arc::new(Logging {
        filter: Mutex::new(filter.to_string()),
        handle,
        format,
        traces,
        lines: buffer,
    }))
}

fn tracer_provider(endpoint: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("--otlp-endpoint {endpoint}: {e}"))?;
    let exporter = OnTokio {
        inner: Arc::new(exporter),
        runtime: tokio::runtime::Handle::try_current()
            .map_err(|_| "the OTLP exporter needs the async runtime".to_string())?,
    };
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_millis(500))
                .build(),
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name("inferd")
        .build();
    // Sampling is decided per request by the front ends (see inferd_server::Telemetry); what
    // reaches the exporter is meant to be exported.
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_resource(resource)
        .build())
}

/// Runs exports on the server's Tokio runtime: the batch processor calls them from a plain
/// thread, where tonic finds no reactor.
#[derive(Debug)]
struct OnTokio<E> {
    inner: Arc<E>,
    runtime: tokio::runtime::Handle,
}

impl<E: SpanExporter + 'static> SpanExporter for OnTokio<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = Arc::clone(&self.inner);
        self.runtime
            .spawn(async move { inner.export(batch).await })
            .await
            .unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(e.to_string())))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        // Called once while building the provider, before any export shares the exporter.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}
