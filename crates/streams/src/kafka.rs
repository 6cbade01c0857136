//! Kafka through librdkafka (rdkafka). The consumer stores an input's offset only once its
//! answer is acknowledged, and librdkafka commits the stored offsets of the group every
//! 200 ms and on close (`enable.auto.offset.store=false`, auto commit of stored offsets), so
//! commits are batched and never ahead of produced answers. The producer is idempotent with
//! no local timeout: it retries in order until the broker is back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;

use crate::StreamError;
use crate::StreamSpec;
use crate::message::{Destination, Incoming, Outgoing};
use crate::run::Source;
use crate::stats::Stats;

/// Offsets and lag from librdkafka's statistics callback (every second).
struct Context {
    stats: Arc<Stats>,
    topic: String,
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut lag = 0;
        for (id, p) in &topic.partitions {
            // -1 is librdkafka's internal "unassigned" partition.
            if p.partition < 0 || !p.desired {
                continue;
            }
            if p.consumer_lag > 0 {
                lag += p.consumer_lag;
            }
            if p.committed_offset >= 0 {
                self.stats.set_offset(&id.to_string(), p.committed_offset);
            }
        }
        self.stats.lag.set(lag);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(stream = %self.stats.name, "kafka: {error}: {reason}");
        self.stats.error(format!("kafka: {reason}"));
    }
}

impl ConsumerContext for Context {}

pub struct Kafka {
    consumer: StreamConsumer<Context>,
    producer: FutureProducer,
    output: String,
    dead_letter: String,
    stats: Arc<Stats>,
    /// The highest offset read per partition in this process: one read again is a redelivery.
    seen: Mutex<HashMap<i32, i64>>,
}

/// Where an input was read.
pub struct Offset {
    topic: String,
    partition: i32,
    offset: i64,
}

impl Kafka {
    pub fn connect(
        spec: &StreamSpec,
        servers: &str,
        stats: Arc<Stats>,
    ) -> Result<Kafka, StreamError> {
        let bad = |e: rdkafka::error::KafkaError| {
            StreamError::Config(format!("stream '{}': kafka: {e}", spec.name))
        };
        let mut consumer = ClientConfig::new();
        consumer
            .set("bootstrap.servers", servers)
            .set("group.id", &spec.group)
            .set("client.id", format!("inferd-{}", spec.name))
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "200")
            .set("auto.offset.reset", "earliest")
            // librdkafka's own prefetch (64 MiB by default) stays: halving it to 16 MiB cut
            // the MLP's JSON stream to a third (bench/streams.py). Back-pressure is ours
            // (`max_in_flight`), on top of that bounded buffer.
            .set("statistics.interval.ms", "1000");
        let mut producer = ClientConfig::new();
        producer
            .set("bootstrap.servers", servers)
            .set("client.id", format!("inferd-{}", spec.name))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            // 0: never give up locally; an unreachable broker pauses the stream instead.
            .set("message.timeout.ms", "0");
        for (key, value) in &spec.kafka {
            consumer.set(key, value);
            producer.set(key, value);
        }
        let consumer: StreamConsumer<Context> = consumer
            .create_with_context(Context {
                stats: Arc::clone(&stats),
                topic: spec.input.clone(),
            })
            .map_err(bad)?;
        consumer.subscribe(&[&spec.input]).map_err(bad)?;
        let producer: FutureProducer = producer.create().map_err(bad)?;
        Ok(Kafka {
            consumer,
            producer,
            output: spec.output.clone(),
            dead_letter: spec.dead_letter.clone(),
            stats,
            seen: Mutex::new(HashMap::new()),
        })
    }
}

impl Source for Kafka {
    type Position = Offset;

    async fn next(&self) -> Result<(Incoming, Offset), String> {
        let msg = self.consumer.recv().await.map_err(|e| e.to_string())?;
        let (partition, offset) = (msg.partition(), msg.offset());
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let last = seen.entry(partition).or_insert(-1);
            if offset <= *last {
                self.stats.redelivered.inc();
            } else {
                *last = offset;
            }
        }
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        let incoming = Incoming {
            key: msg.key().map(<[u8]>::to_vec),
            headers,
            payload: bytes::Bytes::copy_from_slice(msg.payload().unwrap_or_default()),
            position: format!("{}/{partition}/{offset}", msg.topic()),
        };
        Ok((
            incoming,
            Offset {
                topic: msg.topic().to_string(),
                partition,
                offset,
            },
        ))
    }

    fn produce(
        &self,
        out: &Outgoing,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send {
        let topic = match out.to {
            Destination::Output => &self.output,
            Destination::DeadLetter => &self.dead_letter,
        };
        let mut headers = OwnedHeaders::new_with_capacity(out.headers.len());
        for (key, value) in &out.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let record = FutureRecord::to(topic)
            .key(&out.key)
            .payload(&out.payload[..])
            .headers(headers);
        // Queued now, in call order; the future only waits for the broker's answer.
        let queued = self
            .producer
            .send_result(record)
            .map_err(|(e, _)| e.to_string());
        async move {
            match queued?.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(e.to_string()),
                Err(_) => Err("the producer was closed".into()),
            }
        }
    }

    async fn commit(&self, position: Offset) {
        if let Err(e) =
            self.consumer
                .store_offset(&position.topic, position.partition, position.offset)
        {
            // The partition went to another member in a rebalance: it reads from the last
            // commit, so this input is answered twice, never lost.
            tracing::debug!(stream = %self.stats.name, "offset not stored: {e}");
        }
    }

    async fn finish(&self) {
        if let Err(e) = self.producer.flush(Duration::from_secs(10)) {
            tracing::warn!(stream = %self.stats.name, "flushing answers: {e}");
        }
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => tracing::info!(stream = %self.stats.name, "offsets committed"),
            // Nothing stored since the last automatic commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
                tracing::info!(stream = %self.stats.name, "offsets committed")
            }
            Err(e) => {
                tracing::warn!(stream = %self.stats.name, "final commit failed (inputs since the last commit will be redelivered): {e}")
            }
        }
    }
}
