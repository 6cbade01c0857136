//! What travels with a request into the runtime, whatever door it came in by.

use std::time::{Instant, SystemTime};

/// The front door a request came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
    /// TF Serving / KServe V1 REST.
    HttpV1,
    Stream,
    Batch,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::HttpV1 => "http-v1",
            Protocol::Stream => "stream",
            Protocol::Batch => "batch",
        }
    }
}

/// Which model a request is for: a name, and a version when the caller chose one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub model: String,
    /// A version number as text; `None` (or empty) lets the router choose.
    pub version: Option<String>,
}

impl Target {
    pub fn new(model: impl Into<String>, version: Option<&str>) -> Target {
        Target {
            model: model.into(),
            version: version.filter(|v| !v.is_empty()).map(str::to_string),
        }
    }
}

/// The request's context: who, when, how, and what the router may use.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The client's request id, or one made up by the front end; never empty.
    pub id: String,
    /// Whether `id` came from the client (echoed in responses) or was made up.
    pub client_id: bool,
    /// Who called (key id or token subject); empty when authentication is off.
    pub principal: String,
    /// The models the caller may run; `None` when authentication is off.
    pub grant: Option<std::sync::Arc<crate::ModelGrant>>,
    /// The request's trace span when it is sampled: route, queue, batch and backend spans go
    /// under it.
    pub trace: Option<tracing::Span>,
    /// The caller's W3C `traceparent`, as received.
    pub traceparent: Option<String>,
    /// Answer unavailable past this instant; the earlier of this and the request's `timeout`
    /// parameter applies.
    pub deadline: Option<Instant>,
    /// Priority level chosen by the front door; the request's `priority` parameter otherwise.
    pub priority: Option<u32>,
    pub protocol: Protocol,
    pub received: Instant,
    pub received_at: SystemTime,
    /// Key of the caller for sticky routing (a header's value), when there is one.
    pub routing_key: Option<String>,
    /// For a shadow copy: the id of the request it copies.
    pub shadow_of: Option<String>,
    /// Where a decoupled model's responses go as it makes them (gRPC streams); a decoupled
    /// model refuses a request that has none.
    pub responses: Option<ResponseSink>,
}

/// A decoupled model's responses, in the order it makes them; sending waits while the
/// front end is behind (back-pressure on the model).
pub type ResponseSink = tokio::sync::mpsc::Sender<crate::InferResponse>;

impl RequestContext {
    /// A context received now; the id is set once the request is decoded ([`Self::set_id`]).
    pub fn new(protocol: Protocol) -> RequestContext {
        RequestContext {
            client_id: false,
            id: String::new(),
            principal: String::new(),
            grant: None,
            trace: None,
            traceparent: None,
            deadline: None,
            priority: None,
            protocol,
            received: Instant::now(),
            received_at: SystemTime::now(),
            routing_key: None,
            shadow_of: None,
            responses: None,
        }
    }
}

impl RequestContext {
    /// The client's id, or `made_up()` when it gave none.
    pub fn set_id(&mut self, client: &str, made_up: impl FnOnce() -> String) {
        self.client_id = !client.is_empty();
        self.id = if self.client_id {
            client.to_string()
        } else {
            made_up()
        };
    }

    /// The id to echo in the response: the client's, or none.
    pub fn response_id(&self) -> &str {
        if self.client_id { &self.id } else { "" }
    }
}
