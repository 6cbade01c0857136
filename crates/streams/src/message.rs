//! What one input message becomes, whatever the broker: an answer for the output, or a dead
//! letter with the reason and the original bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use inferd_runtime::Target;
use inferd_server::Pipeline;
use inferd_server::messages::{self, Encoding};
use opentelemetry::propagation::Extractor;

use crate::stats::Stats;

/// Headers of a message, in order, as the broker gave them.
pub type Headers = Vec<(String, Vec<u8>)>;

/// A message read from the input.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub key: Option<Vec<u8>>,
    pub headers: Headers,
    pub payload: Bytes,
    /// Where it was read: `topic/partition/offset` (Kafka), `stream/sequence` (JetStream).
    pub position: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Output,
    DeadLetter,
}

/// A message to write.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub to: Destination,
    pub key: Vec<u8>,
    pub headers: Headers,
    pub payload: Bytes,
}

/// The headers inferd writes itself; an input's own values of these are not passed on.
const OURS: &[&str] = &[
    "inferd-model",
    "inferd-version",
    "inferd-request-id",
    "inferd-stream",
    "inferd-input",
    "inferd-error",
    "inferd-error-code",
    "traceparent",
    "seldon-infer-type",
];

/// A header's value as text, by case-insensitive name.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Headers as a trace-context carrier (`traceparent`).
struct Carrier<'a>(&'a Headers);

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        header(self.0, key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Turns input messages into outputs through `runtime.infer` (by the server's pipeline).
pub struct Handler {
    pub pipeline: Pipeline,
    /// The stream's `model`, when it names one.
    pub target: Option<Target>,
    pub encoding: Encoding,
    pub max_retry: Duration,
    pub stats: Arc<Stats>,
    /// `stream:<name>`: who the requests are from, on the access log and audit records.
    pub principal: String,
}

impl Handler {
    /// The model a message is for: the stream's, else its headers'; without either, a
    /// protobuf request's own `model_name` decides (in `messages::infer`).
    fn target(&self, msg: &Incoming) -> Option<Target> {
        if let Some(target) = &self.target {
            return Some(target.clone());
        }
        let pick = |names: [&str; 2]| names.iter().find_map(|n| header(&msg.headers, n));
        pick(["inferd-model", "mlserver-model"])
            .map(|model| Target::new(model, pick(["inferd-version", "mlserver-version"])))
    }

    fn encoding(&self, msg: &Incoming) -> Result<Encoding, String> {
        match header(&msg.headers, "seldon-infer-type")
            .or_else(|| header(&msg.headers, "content-type"))
        {
            None => Ok(self.encoding),
            Some(value) => Encoding::from_header(value).ok_or_else(|| {
                format!(
                    "unknown payload type '{value}': seldon-infer-type takes \
                     json/inferModelRequest or proto/InferModelRequest"
                )
            }),
        }
    }

    pub async fn handle(&self, msg: Incoming) -> Outgoing {
        let encoding = match self.encoding(&msg) {
            Ok(encoding) => encoding,
            Err(e) => return self.dead_letter(msg, &e, 400),
        };
        let target = self.target(&msg);
        let started = Instant::now();
        let mut backoff = Duration::from_millis(2);
        loop {
            let answer = messages::infer(
                &self.pipeline,
                &self.principal,
                target.clone(),
                &Carrier(&msg.headers),
                encoding,
                msg.payload.clone(),
            )
            .await;
            match answer {
                Ok(answer) => {
                    let mut headers = passed_on(&msg.headers);
                    headers.extend([
                        ("inferd-model".to_string(), answer.model.into_bytes()),
                        ("inferd-version".to_string(), answer.version.into_bytes()),
                        (
                            "inferd-request-id".to_string(),
                            answer.id.clone().into_bytes(),
                        ),
                        ("traceparent".to_string(), answer.traceparent.into_bytes()),
                        (
                            "seldon-infer-type".to_string(),
                            encoding.response_type().as_bytes().to_vec(),
                        ),
                        (
                            "inferd-stream".to_string(),
                            self.stats.name.clone().into_bytes(),
                        ),
                        ("inferd-input".to_string(), msg.position.into_bytes()),
                    ]);
                    return Outgoing {
                        to: Destination::Output,
                        key: msg.key.unwrap_or_else(|| answer.id.into_bytes()),
                        headers,
                        payload: Bytes::from(answer.payload),
                    };
                }
                // A full queue or a loading model: wait for it rather than dead-letter, so a
                // busy model slows the stream down instead of failing its messages.
                Err(failure) if failure.is_transient() && started.elapsed() < self.max_retry => {
                    self.stats.retried.inc();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(failure) => {
                    let code = failure.error.status().as_u16();
                    return self.dead_letter(msg, &failure.error.message, code);
                }
            }
        }
    }

    fn dead_letter(&self, msg: Incoming, reason: &str, code: u16) -> Outgoing {
        self.stats.error(format!("{}: {reason}", msg.position));
        tracing::debug!(stream = %self.stats.name, position = %msg.position, "dead letter: {reason}");
        let mut headers = passed_on(&msg.headers);
        headers.extend([
            ("inferd-error".to_string(), reason.as_bytes().to_vec()),
            (
                "inferd-error-code".to_string(),
                code.to_string().into_bytes(),
            ),
            (
                "inferd-stream".to_string(),
                self.stats.name.clone().into_bytes(),
            ),
            (
                "inferd-input".to_string(),
                msg.position.clone().into_bytes(),
            ),
        ]);
        Outgoing {
            to: Destination::DeadLetter,
            key: msg.key.unwrap_or_else(|| msg.position.into_bytes()),
            headers,
            payload: msg.payload,
        }
    }
}

/// The input's headers an answer carries on: all but those inferd sets.
fn passed_on(headers: &Headers) -> Headers {
    headers
        .iter()
        .filter(|(k, _)| !OURS.iter().any(|o| k.eq_ignore_ascii_case(o)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn headers_are_found_by_any_case_and_ours_are_not_passed_on() {
        let h = headers(&[
            ("Inferd-Model", "iris"),
            ("x-user", "42"),
            ("traceparent", "00-old"),
            ("inferd-error", "stale"),
        ]);
        assert_eq!(header(&h, "inferd-model"), Some("iris"));
        assert_eq!(header(&h, "missing"), None);
        let kept: Vec<_> = passed_on(&h).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kept, ["x-user"]);
    }

    #[test]
    fn payload_types_from_headers() {
        assert_eq!(
            Encoding::from_header("proto/InferModelRequest"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::from_header("json/inferModelRequest"),
            Some(Encoding::Json)
        );
        assert_eq!(
            Encoding::from_header("application/x-protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(Encoding::from_header("text/xml"), None);
    }
}
