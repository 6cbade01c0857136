//! The stream front end: consumers of Kafka topics and NATS JetStream subjects inside
//! `inferd serve`. Each message is a V2 inference request (JSON or protobuf) that goes through
//! the server's pipeline to `runtime.infer` like an HTTP or gRPC request; its answer goes to the
//! output topic, a failure to the dead-letter topic, and the input is committed only after the
//! broker has acknowledged what it became (at-least-once).

mod config;
mod kafka;
mod message;
mod nats;
mod run;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use inferd_server::{Pipeline, StreamsView};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::{Broker, StreamSpec, load, parse};
pub use message::{Destination, Headers, Incoming, Outgoing};
pub use stats::{Metrics, Stats};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    Config(String),
    #[error("stream metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The running streams of a server.
pub struct Streams {
    stats: Vec<Arc<Stats>>,
    stop: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("streams", &self.stats.len())
            .finish()
    }
}

impl Streams {
    /// Starts one task per stream. A broker that is not up yet is retried in the background
    /// (the stream shows `paused` with the reason), so the server starts either way.
    pub fn start(
        specs: Vec<StreamSpec>,
        pipeline: Pipeline,
        registry: &prometheus::Registry,
    ) -> Result<Arc<Streams>, StreamError> {
        let metrics = Metrics::new(registry)?;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut all = Vec::new();
        for spec in specs {
            let broker = spec.broker()?;
            let stats = Arc::new(Stats::new(&metrics, &spec));
            let handler = message::Handler {
                pipeline: pipeline.clone(),
                target: spec.target(),
                encoding: spec.encoding()?,
                max_retry: Duration::from_secs(spec.max_retry_secs),
                stats: Arc::clone(&stats),
                principal: format!("stream:{}", spec.name),
            };
            all.push(Arc::clone(&stats));
            tasks.spawn(stream_task(spec, broker, handler, stopped.clone()));
        }
        Ok(Arc::new(Streams {
            stats: all,
            stop,
            tasks: tokio::sync::Mutex::new(tasks),
        }))
    }

    /// Stops fetching, finishes and commits in-flight messages, and returns once every stream
    /// has stopped.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let mut tasks = self.tasks.lock().await;
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!("a stream task failed: {e}");
            }
        }
    }
}

impl StreamsView for Streams {
    fn status(&self) -> serde_json::Value {
        json!({ "streams": self.stats.iter().map(|s| s.status()).collect::<Vec<_>>() })
    }
}

/// Connects (again and again until it works or the server stops) and runs one stream.
async fn stream_task(
    spec: StreamSpec,
    broker: Broker,
    handler: message::Handler,
    mut stop: watch::Receiver<bool>,
) {
    let stats = Arc::clone(&handler.stats);
    let drain = Duration::from_secs(spec.drain_secs);
    let mut backoff = Duration::from_millis(200);
    loop {
        let failed = match &broker {
            Broker::Kafka(servers) => {
                match kafka::Kafka::connect(&spec, servers, Arc::clone(&stats)) {
                    Ok(kafka) => return consume(&spec, &kafka, &handler, drain, stop).await,
                    Err(e) => e,
                }
            }
            Broker::Nats(url) => {
                let connecting = nats::Nats::connect(&spec, url, Arc::clone(&stats));
                tokio::select! {
                    connected = connecting => match connected {
                        Ok(nats) => return consume(&spec, &nats, &handler, drain, stop).await,
                        Err(e) => e,
                    },
                    () = run::stopped(&mut stop) => break,
                }
            }
        };
        tracing::warn!(stream = %spec.name, "{failed}; retrying in {backoff:?}");
        stats.error(failed.to_string());
        stats.set_state("paused");
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = run::stopped(&mut stop) => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    stats.set_state("stopped");
}

async fn consume<S: run::Source>(
    spec: &StreamSpec,
    source: &S,
    handler: &message::Handler,
    drain: Duration,
    stop: watch::Receiver<bool>,
) {
    tracing::info!(stream = %spec.name, broker = %spec.broker, input = %spec.input, "stream consuming");
    run::run(source, handler, spec.max_in_flight, drain, stop).await;
}
