//! NATS JetStream through async-nats: a durable pull consumer (`group`) with explicit acks on
//! the input's stream, created when missing (and a stream for the output and dead-letter
//! subjects when none covers them, since a JetStream publish needs one to be acknowledged).
//! An input is acked only after its answer's publish is acknowledged; answers carry
//! `Nats-Msg-Id` = the input's stream and sequence, so JetStream drops the duplicate a
//! redelivery after a crash would otherwise write (within the stream's duplicate window).

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::message::{Destination, Incoming, Outgoing, header};
use crate::run::Source;
use crate::stats::Stats;
use crate::{StreamError, StreamSpec};

pub struct Nats {
    js: jetstream::Context,
    consumer: PullConsumer,
    messages: Mutex<Option<pull::Stream>>,
    sender: mpsc::UnboundedSender<Publish>,
    output: String,
    dead_letter: String,
    stats: Arc<Stats>,
}

/// A JetStream stream name for a subject: `iris.in.>` → `IRIS_IN`.
fn stream_name(subject: &str) -> String {
    let name: String = subject
        .split('.')
        .filter(|t| *t != "*" && *t != ">")
        .collect::<Vec<_>>()
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "INFERD".into()
    } else {
        name
    }
}

/// The stream that holds `subject`, created (file storage) when none does.
async fn ensure_stream(
    js: &jetstream::Context,
    subject: &str,
    name: Option<&str>,
) -> Result<stream::Stream, String> {
    if let Ok(existing) = js.stream_by_subject(subject).await {
        return js.get_stream(&existing).await.map_err(|e| e.to_string());
    }
    let name = name.map_or_else(|| stream_name(subject), str::to_string);
    tracing::info!(stream = %name, subject, "creating the JetStream stream");
    js.get_or_create_stream(stream::Config {
        name,
        subjects: vec![subject.to_string()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())
}

/// An answer to publish; `reply` learns when JetStream has acknowledged it.
struct Publish {
    subject: String,
    headers: HeaderMap,
    payload: bytes::Bytes,
    reply: Option<oneshot::Sender<()>>,
}

/// Publishes answers in queue order, many at a time, and waits for their acks in that order.
/// When one fails (the server went away) it and every one after it are published again, in
/// order, once the server is back: answers keep their input order, and the ones that had
/// already landed are dropped by JetStream as duplicates of their `Nats-Msg-Id`.
async fn publisher(
    js: jetstream::Context,
    mut queue: mpsc::UnboundedReceiver<Publish>,
    stats: Arc<Stats>,
) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, 256).await > 0 {
        let mut from = 0;
        let mut backoff = Duration::from_millis(50);
        while from < batch.len() {
            let mut acks = Vec::new();
            let mut failure = None;
            for p in &batch[from..] {
                match js
                    .publish_with_headers(p.subject.clone(), p.headers.clone(), p.payload.clone())
                    .await
                {
                    Ok(ack) => acks.push(ack),
                    Err(e) => {
                        failure = Some(e.to_string());
                        break;
                    }
                }
            }
            let mut landed = 0;
            for ack in acks {
                match ack.await {
                    Ok(_) => landed += 1,
                    Err(e) => {
                        failure = Some(e.to_string());
                        break;
                    }
                }
            }
            for p in &mut batch[from..from + landed] {
                if let Some(reply) = p.reply.take() {
                    let _ = reply.send(());
                }
            }
            from += landed;
            if let Some(e) = failure {
                tracing::warn!(stream = %stats.name, "cannot publish answers: {e}; again in {backoff:?}");
                stats.error(format!("publishing: {e}"));
                stats.retried.inc();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        batch.clear();
    }
}

impl Nats {
    pub async fn connect(
        spec: &StreamSpec,
        url: &str,
        stats: Arc<Stats>,
    ) -> Result<Nats, StreamError> {
        let bad = |e: String| StreamError::Config(format!("stream '{}': nats: {e}", spec.name));
        let client = async_nats::ConnectOptions::new()
            .name(format!("inferd-{}", spec.name))
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| bad(e.to_string()))?;
        let js = jetstream::new(client);
        let input = ensure_stream(&js, &spec.input, spec.nats_stream.as_deref())
            .await
            .map_err(bad)?;
        for subject in [&spec.output, &spec.dead_letter] {
            ensure_stream(&js, subject, None).await.map_err(bad)?;
        }
        let consumer = input
            .get_or_create_consumer(
                &spec.group,
                pull::Config {
                    durable_name: Some(spec.group.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(60),
                    filter_subject: spec.input.clone(),
                    // More than this unacked and the server holds back: the in-flight bound
                    // with room for one batch being pulled.
                    max_ack_pending: (spec.max_in_flight * 2) as i64,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| bad(e.to_string()))?;
        let (sender, queue) = mpsc::unbounded_channel();
        tokio::spawn(publisher(js.clone(), queue, Arc::clone(&stats)));
        Ok(Nats {
            js,
            consumer,
            messages: Mutex::new(None),
            sender,
            output: spec.output.clone(),
            dead_letter: spec.dead_letter.clone(),
            stats,
        })
    }
}

impl Source for Nats {
    type Position = jetstream::Message;

    async fn next(&self) -> Result<(Incoming, jetstream::Message), String> {
        let mut messages = self.messages.lock().await;
        if messages.is_none() {
            *messages = Some(self.consumer.messages().await.map_err(|e| e.to_string())?);
        }
        let next = match messages.as_mut() {
            Some(stream) => stream.next().await,
            None => None,
        };
        let msg = match next {
            Some(Ok(msg)) => msg,
            Some(Err(e)) => {
                // Heartbeats missed (the server went away): pull again once it is back.
                *messages = None;
                return Err(e.to_string());
            }
            None => {
                *messages = None;
                return Err("the message stream ended".into());
            }
        };
        drop(messages);
        let (position, delivered) = match msg.info() {
            Ok(info) => {
                self.stats.lag.set(info.pending as i64);
                (
                    format!("{}/{}", info.stream, info.stream_sequence),
                    info.delivered,
                )
            }
            Err(_) => (msg.subject.to_string(), 1),
        };
        if delivered > 1 {
            self.stats.redelivered.inc();
        }
        let headers: Vec<(String, Vec<u8>)> = msg
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(move |v| (name.to_string(), v.as_str().as_bytes().to_vec()))
            })
            .collect();
        let key = header(&headers, "inferd-key")
            .or_else(|| header(&headers, "Nats-Msg-Id"))
            .map(|k| k.as_bytes().to_vec());
        let incoming = Incoming {
            key,
            headers,
            payload: msg.payload.clone(),
            position,
        };
        Ok((incoming, msg))
    }

    fn produce(
        &self,
        out: &Outgoing,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send {
        let subject = match out.to {
            Destination::Output => self.output.clone(),
            Destination::DeadLetter => self.dead_letter.clone(),
        };
        let mut headers = HeaderMap::new();
        for (key, value) in &out.headers {
            // NATS headers are text lines.
            let value = String::from_utf8_lossy(value).replace(['\r', '\n'], " ");
            if key.eq_ignore_ascii_case("Nats-Msg-Id") {
                continue;
            }
            headers.append(key.as_str(), value);
        }
        if let Some(input) = header(&out.headers, "inferd-input") {
            let kind = match out.to {
                Destination::Output => "out",
                Destination::DeadLetter => "dlq",
            };
            headers.insert("Nats-Msg-Id", format!("inferd/{kind}/{input}"));
        }
        headers.insert("inferd-key", String::from_utf8_lossy(&out.key).into_owned());
        let (reply, done) = oneshot::channel();
        // Queued now, in call order: the sender publishes in that order.
        let queued = self.sender.send(Publish {
            subject,
            headers,
            payload: out.payload.clone(),
            reply: Some(reply),
        });
        async move {
            queued.map_err(|_| "the publisher has stopped".to_string())?;
            done.await
                .map_err(|_| "the publisher has stopped".to_string())
        }
    }

    async fn commit(&self, position: jetstream::Message) {
        if let Err(e) = position.ack().await {
            tracing::warn!(stream = %self.stats.name, "ack failed (the input will be redelivered): {e}");
            return;
        }
        if let Ok(info) = position.info() {
            self.stats
                .set_offset(info.stream, info.stream_sequence as i64 + 1);
        }
    }

    async fn finish(&self) {
        if let Err(e) = self.js.client().flush().await {
            tracing::warn!(stream = %self.stats.name, "flushing acks: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stream_names_from_subjects() {
        assert_eq!(super::stream_name("iris.in.>"), "IRIS_IN");
        assert_eq!(super::stream_name("a.*.b"), "A_B");
        assert_eq!(super::stream_name(">"), "INFERD");
    }
}
