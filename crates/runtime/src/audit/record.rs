//! One audit record: what is written for each request, and the hashes that chain records.

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::observer::{Completed, Outcome};
use crate::time::rfc3339;
use inferd_core::NamedTensor;

use crate::ErrorKind;

/// What of the request's tensors a model's records keep (config.toml `[audit] payloads`).
pub use inferd_core::AuditPayloads as Payloads;

#[derive(Serialize)]
struct Status<'a> {
    code: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
}

#[derive(Serialize)]
struct TensorPayload<'a> {
    datatype: &'static str,
    shape: &'a [usize],
    /// The tensor's bytes in the binary wire form, base64.
    b64: String,
}

#[derive(Serialize)]
struct Body<'a> {
    id: &'a str,
    received_at: String,
    completed_at: String,
    model_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<String>,
    route: String,
    principal: &'a str,
    protocol: &'static str,
    status: Status<'a>,
    latency_us: u64,
    /// Answered from the response cache (the model did not run).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow_of: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inputs: Option<std::collections::BTreeMap<&'a str, TensorPayload<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outputs: Option<std::collections::BTreeMap<&'a str, TensorPayload<'a>>>,
}

/// The status code of an error kind, protocol-neutral (gRPC's code names).
pub fn code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::Unavailable => "UNAVAILABLE",
        ErrorKind::TooLarge => "RESOURCE_EXHAUSTED",
        ErrorKind::Internal => "INTERNAL",
        ErrorKind::Unauthenticated => "UNAUTHENTICATED",
        ErrorKind::PermissionDenied => "PERMISSION_DENIED",
        ErrorKind::RateLimited => "RESOURCE_EXHAUSTED",
    }
}

/// SHA-256 over tensors in name order: for each, its name, datatype, shape and wire bytes,
/// each behind its length (so no two different sets of tensors hash alike).
pub fn tensors_sha256(tensors: &[NamedTensor]) -> String {
    let mut sorted: Vec<&NamedTensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut h = Sha256::new();
    fn field(h: &mut Sha256, bytes: &[u8]) {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    for t in sorted {
        field(&mut h, t.name.as_bytes());
        field(&mut h, t.tensor.datatype().as_str().as_bytes());
        let shape: Vec<u8> = t
            .tensor
            .shape()
            .iter()
            .flat_map(|d| (*d as u64).to_le_bytes())
            .collect();
        field(&mut h, &shape);
        // The bytes chunk by chunk, behind their total length: no joined copy.
        let chunks = t.tensor.chunks();
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        h.update((total as u64).to_le_bytes());
        for chunk in chunks {
            h.update(chunk);
        }
    }
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn payload<'a>(
    tensors: &'a [NamedTensor],
) -> std::collections::BTreeMap<&'a str, TensorPayload<'a>> {
    tensors
        .iter()
        .map(|t| {
            let payload = TensorPayload {
                datatype: t.tensor.datatype().as_str(),
                shape: t.tensor.shape(),
                b64: base64::engine::general_purpose::STANDARD.encode(t.tensor.contiguous()),
            };
            (t.name.as_str(), payload)
        })
        .collect()
}

/// The record of one finished request as JSON fields (no braces), `payloads` deciding what of
/// the tensors it keeps.
pub fn body(event: &Completed<'_>, payloads: Payloads) -> Vec<u8> {
    let ctx = event.context;
    let (code, message, route, outputs) = match &event.outcome {
        Outcome::Answered(r) => ("OK", "", r.route.clone(), Some(&r.outputs[..])),
        Outcome::Failed { kind, message } => (self::code(*kind), *message, String::new(), None),
        Outcome::Canceled => (
            "CANCELLED",
            "the caller went away before the answer",
            String::new(),
            None,
        ),
    };
    let route = match (&ctx.shadow_of, route.is_empty()) {
        (Some(_), _) => "shadow".to_string(),
        (None, false) => route,
        (None, true) => String::new(),
    };
    let inputs = event.request.map(|r| &r.inputs[..]);
    let model_name = match &event.outcome {
        Outcome::Answered(r) => r.model_name.as_str(),
        _ => event.target.model.as_str(),
    };
    let body = Body {
        id: &ctx.id,
        received_at: rfc3339(ctx.received_at),
        completed_at: rfc3339(std::time::SystemTime::now()),
        model_name,
        model_version: event.version.map(|v| v.to_string()),
        route,
        principal: &ctx.principal,
        protocol: ctx.protocol.as_str(),
        status: Status { code, message },
        latency_us: event.latency.as_micros() as u64,
        cached: matches!(&event.outcome, Outcome::Answered(r) if r.cached),
        input_sha256: inputs.map(tensors_sha256),
        output_sha256: outputs.map(tensors_sha256),
        traceparent: ctx.traceparent.as_deref(),
        shadow_of: ctx.shadow_of.as_deref(),
        inputs: (payloads != Payloads::None)
            .then(|| inputs.map(payload))
            .flatten(),
        outputs: (payloads == Payloads::All)
            .then(|| outputs.map(payload))
            .flatten(),
    };
    let mut json = serde_json::to_vec(&body).unwrap_or_default();
    // The object's fields alone: the writer adds the chain fields around them.
    json.pop();
    json.remove(0);
    json
}

/// A whole line: sequence number, the previous record's hash, the fields, and this record's
/// hash over all of that.
pub fn line(seq: u64, prev: &str, body: &[u8]) -> (Vec<u8>, String) {
    let mut line = Vec::with_capacity(body.len() + 180);
    line.extend_from_slice(format!("{{\"seq\":{seq},\"prev\":\"{prev}\",").as_bytes());
    line.extend_from_slice(body);
    line.push(b'}');
    let hash = sha256_hex(&line);
    line.pop();
    line.extend_from_slice(format!(",\"hash\":\"{hash}\"}}\n").as_bytes());
    (line, hash)
}

/// Splits a line into what was hashed and the hash it carries; `None` when it is not a record.
pub fn split_hash(line: &[u8]) -> Option<(Vec<u8>, &str)> {
    const TAIL: usize = ",\"hash\":\"".len() + 64 + "\"}".len();
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.len() < TAIL || !line.ends_with(b"\"}") {
        return None;
    }
    let (head, tail) = line.split_at(line.len() - TAIL);
    let hash = std::str::from_utf8(&tail[9..9 + 64]).ok()?;
    if !tail.starts_with(b",\"hash\":\"") {
        return None;
    }
    let mut hashed = head.to_vec();
    hashed.push(b'}');
    Some((hashed, hash))
}

/// The hash that precedes the first record ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The record of an event in a model's life (not a request), e.g. a source moving versions.
pub fn event(model: &str, message: &str) -> Vec<u8> {
    let now = std::time::SystemTime::now();
    let nanos = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let body = serde_json::json!({
        "id": format!("event-{nanos}"),
        "received_at": rfc3339(now),
        "completed_at": rfc3339(now),
        "model_name": model,
        "event": "model",
        "message": message,
    });
    let mut json = serde_json::to_vec(&body).unwrap_or_default();
    json.pop();
    json.remove(0);
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_carries_a_hash_of_itself() {
        let (line, hash) = line(7, GENESIS, br#""id":"a","model_name":"m""#);
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(text.starts_with(r#"{"seq":7,"prev":"0000"#) && text.ends_with("\"}\n"));
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["hash"], hash.as_str());
        let (hashed, carried) = split_hash(&line).unwrap();
        assert_eq!(
            (sha256_hex(&hashed), carried),
            (hash.clone(), hash.as_str())
        );
        let mut flipped = line.clone();
        flipped[20] ^= 1;
        let (hashed, carried) = split_hash(&flipped).unwrap();
        assert_ne!(sha256_hex(&hashed), carried);
    }
}
