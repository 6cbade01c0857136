//! The streams file (`--streams streams.toml`): one `[[stream]]` table per consumer.

use std::collections::BTreeMap;
use std::path::Path;

use inferd_server::messages::Encoding;
use serde::Deserialize;

use crate::StreamError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    stream: Vec<StreamSpec>,
}

/// One stream consumer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    pub name: String,
    /// `kafka://host:port[,host:port]` or `nats://host:port`.
    pub broker: String,
    /// Kafka topic, or NATS subject (wildcards allowed).
    pub input: String,
    pub output: String,
    pub dead_letter: String,
    /// Kafka consumer group; JetStream durable consumer name.
    #[serde(default = "default_group")]
    pub group: String,
    /// `m`, `m:2` or `m@alias`; without it the `inferd-model`/`inferd-version` headers (or
    /// MLServer's, or a protobuf request's `model_name`) choose.
    #[serde(default)]
    pub model: Option<String>,
    /// `json` or `protobuf`; a message's `seldon-infer-type` header overrides it.
    #[serde(default = "default_format")]
    pub format: String,
    /// Messages between receipt and commit at most (in inference or being produced): the
    /// consumer stops fetching at this many.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// How long a message is retried while its model is unavailable (queue full, loading)
    /// before it goes to the dead-letter topic.
    #[serde(default = "default_retry_secs")]
    pub max_retry_secs: u64,
    /// How long SIGTERM waits for in-flight messages before it commits and exits.
    #[serde(default = "default_drain_secs")]
    pub drain_secs: u64,
    /// JetStream: the stream holding `input`, created when missing (default: from the
    /// subject, e.g. `iris.in.>` → `IRIS_IN`).
    #[serde(default)]
    pub nats_stream: Option<String>,
    /// librdkafka settings passed through (`"session.timeout.ms" = "6000"`), for the consumer
    /// and the producer alike.
    #[serde(default)]
    pub kafka: BTreeMap<String, String>,
}

fn default_group() -> String {
    "inferd".into()
}
fn default_format() -> String {
    "json".into()
}
fn default_in_flight() -> usize {
    256
}
fn default_retry_secs() -> u64 {
    60
}
fn default_drain_secs() -> u64 {
    30
}

/// The broker a stream reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broker {
    /// Bootstrap servers, comma separated.
    Kafka(String),
    /// A NATS server URL.
    Nats(String),
}

impl StreamSpec {
    pub fn broker(&self) -> Result<Broker, StreamError> {
        let bad = |why: &str| StreamError::Config(format!("stream '{}': {why}", self.name));
        if let Some(servers) = self.broker.strip_prefix("kafka://") {
            if servers.is_empty() {
                return Err(bad("kafka:// needs host:port"));
            }
            Ok(Broker::Kafka(servers.to_string()))
        } else if self.broker.starts_with("nats://") {
            Ok(Broker::Nats(self.broker.clone()))
        } else {
            Err(bad(&format!(
                "broker '{}' is neither kafka://host:port nor nats://host:port",
                self.broker
            )))
        }
    }

    pub fn encoding(&self) -> Result<Encoding, StreamError> {
        Encoding::parse(&self.format).ok_or_else(|| {
            StreamError::Config(format!(
                "stream '{}': format '{}' is neither json nor protobuf",
                self.name, self.format
            ))
        })
    }

    /// The model and version the stream names, if it names one: `m`, `m:2`, `m@production`.
    pub fn target(&self) -> Option<inferd_runtime::Target> {
        let model = self.model.as_deref()?;
        let (name, version) = match model.split_once([':', '@']) {
            Some((name, version)) => (name, Some(version)),
            None => (model, None),
        };
        Some(inferd_runtime::Target::new(name, version))
    }

    fn check(&self) -> Result<(), StreamError> {
        let bad = |why: String| StreamError::Config(format!("stream '{}': {why}", self.name));
        if self.name.is_empty() {
            return Err(StreamError::Config("a stream needs a name".into()));
        }
        for (key, value) in [
            ("input", &self.input),
            ("output", &self.output),
            ("dead_letter", &self.dead_letter),
            ("group", &self.group),
        ] {
            if value.is_empty() {
                return Err(bad(format!("'{key}' is empty")));
            }
        }
        if self.input == self.output || self.input == self.dead_letter {
            return Err(bad(
                "input must differ from output and dead_letter (it would read its own answers)"
                    .into(),
            ));
        }
        if self.max_in_flight == 0 {
            return Err(bad("max_in_flight must be at least 1".into()));
        }
        self.broker()?;
        self.encoding()?;
        Ok(())
    }
}

/// Reads and checks a streams file.
pub fn load(path: &Path) -> Result<Vec<StreamSpec>, StreamError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StreamError::Config(format!("cannot read {}: {e}", path.display())))?;
    parse(&text).map_err(|e| match e {
        StreamError::Config(m) => StreamError::Config(format!("{}: {m}", path.display())),
        other => other,
    })
}

pub fn parse(text: &str) -> Result<Vec<StreamSpec>, StreamError> {
    let file: File = toml::from_str(text).map_err(|e| StreamError::Config(e.to_string()))?;
    let mut names = std::collections::HashSet::new();
    for spec in &file.stream {
        spec.check()?;
        if !names.insert(spec.name.as_str()) {
            return Err(StreamError::Config(format!(
                "two streams are named '{}'",
                spec.name
            )));
        }
    }
    Ok(file.stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[[stream]]
name = "iris-kafka"
broker = "kafka://127.0.0.1:9092"
input = "iris-in"
output = "iris-out"
dead_letter = "iris-dlq"
group = "inferd"
model = "iris_logreg@production"
format = "json"
kafka = { "session.timeout.ms" = "6000" }

[[stream]]
name = "iris-nats"
broker = "nats://127.0.0.1:4222"
input = "iris.in.>"
output = "iris.out"
dead_letter = "iris.dlq"
format = "protobuf"
"#;

    #[test]
    fn reads_the_documented_keys() {
        let specs = parse(EXAMPLE).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(
            specs[0].broker().unwrap(),
            Broker::Kafka("127.0.0.1:9092".into())
        );
        let target = specs[0].target().unwrap();
        assert_eq!(
            (target.model.as_str(), target.version.as_deref()),
            ("iris_logreg", Some("production"))
        );
        assert_eq!(specs[0].kafka["session.timeout.ms"], "6000");
        assert_eq!(specs[1].encoding().unwrap(), Encoding::Protobuf);
        assert!(specs[1].target().is_none());
        assert_eq!(specs[1].group, "inferd");
    }

    #[test]
    fn refuses_what_cannot_work() {
        let bad = |text: &str, want: &str| {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        };
        let base = "name='s'\ninput='a'\noutput='b'\ndead_letter='c'\n";
        bad(
            &format!("[[stream]]\n{base}broker='amqp://x'\n"),
            "neither kafka",
        );
        bad(
            &format!("[[stream]]\n{base}broker='kafka://x:1'\nformat='xml'\n"),
            "neither json",
        );
        bad(
            "[[stream]]\nname='s'\nbroker='kafka://x:1'\ninput='a'\noutput='a'\ndead_letter='c'\n",
            "must differ",
        );
        bad(
            &format!("[[stream]]\n{base}broker='kafka://x:1'\ntopic='x'\n"),
            "unknown field",
        );
        bad(
            &format!(
                "[[stream]]\n{base}broker='kafka://x:1'\n[[stream]]\n{base}broker='kafka://x:1'\n"
            ),
            "two streams",
        );
    }
}
