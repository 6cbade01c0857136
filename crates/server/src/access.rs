//! The access log: one line per inference request, whichever door it came in by, written by an
//! observer of the runtime when the request ends.

use std::sync::atomic::{AtomicBool, Ordering};

use inferd_runtime::{Completed, ErrorKind, Observer, Outcome, Protocol};

use crate::error::{grpc_code_of, status_of};
use crate::metrics::code_name;

/// Target of the access log lines.
pub const ACCESS_TARGET: &str = "inferd::access";

pub struct AccessLog {
    on: AtomicBool,
}

impl AccessLog {
    pub fn new(on: bool) -> AccessLog {
        AccessLog {
            on: AtomicBool::new(on),
        }
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }
}

/// The status as the request's protocol says it: an HTTP code, or a gRPC code name.
fn status(protocol: Protocol, failure: Option<ErrorKind>) -> std::borrow::Cow<'static, str> {
    match protocol {
        Protocol::Http | Protocol::HttpV1 => match failure {
            None => "200".into(),
            Some(kind) => status_of(kind).as_str().to_string().into(),
        },
        Protocol::Grpc | Protocol::Stream | Protocol::Batch => match failure {
            None => code_name(tonic::Code::Ok).into(),
            Some(kind) => code_name(grpc_code_of(kind)).into(),
        },
    }
}

impl Observer for AccessLog {
    fn completed(&self, event: &Completed<'_>) {
        if !self.is_on() {
            return;
        }
        let status = match event.outcome {
            Outcome::Answered(_) => status(event.context.protocol, None),
            Outcome::Failed { kind, .. } => status(event.context.protocol, Some(kind)),
            Outcome::Canceled => "canceled".into(),
        };
        let version = event.version.map(|v| v.to_string()).unwrap_or_default();
        // A root event: its fields say which request it is, the request span's would repeat them.
        tracing::info!(
            target: ACCESS_TARGET,
            parent: None,
            id = %event.context.id,
            principal = %event.context.principal,
            model = %event.target.model,
            version,
            status = %status,
            latency_us = event.latency.as_micros() as u64,
            "request"
        );
    }
}
