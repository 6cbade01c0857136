//! The one path of an inference through a front end: decode the wire format, call
//! `runtime.infer`, encode the answer. It makes the request's context (receive time, trace,
//! request id) and its log span; the runtime's observers record the request. Handlers supply
//! only the decoder and the encoder of their wire format.

use std::future::Future;
use std::sync::Arc;

use inferd_runtime::{
    InferRequest, InferResponse, Protocol, RequestContext, ResponseSink, Runtime, Target,
};
use opentelemetry::propagation::Extractor;
use tracing::Instrument;

use crate::auth::Access;
use crate::shm::OutputRegions;
use crate::telemetry::child;
use crate::{ApiError, Telemetry};

/// A request the decoder refused, with the client's id when it got that far.
#[derive(Debug)]
pub struct Rejected {
    pub error: ApiError,
    pub id: String,
}

impl From<ApiError> for Rejected {
    fn from(error: ApiError) -> Rejected {
        Rejected {
            error,
            id: String::new(),
        }
    }
}

impl ApiError {
    /// This error, for the request with `id`.
    pub fn of(self, id: &str) -> Rejected {
        Rejected {
            error: self,
            id: id.to_string(),
        }
    }
}

/// What a decoder makes of a wire request.
#[derive(Debug)]
pub struct Decoded<F> {
    pub request: InferRequest,
    /// The client's request id; empty when it gave none.
    pub id: String,
    /// How the answer is to be written (e.g. which outputs go binary).
    pub format: F,
    /// Outputs written into shared memory regions rather than the answer.
    pub shm: OutputRegions,
}

#[derive(Clone)]
pub struct Pipeline {
    pub runtime: Arc<Runtime>,
    pub telemetry: Arc<Telemetry>,
}

impl Pipeline {
    fn span(&self, context: &RequestContext, target: &Target) -> tracing::Span {
        self.telemetry.request_span(
            context.protocol.as_str(),
            &target.model,
            &context.id,
            &context.principal,
        )
    }

    /// decode → `runtime.infer` → encode, for `target`. `carrier` holds the caller's trace
    /// context (HTTP headers, gRPC metadata). A request that cannot be decoded is answered with
    /// the decoder's error and recorded as rejected.
    pub async fn infer<F, Out>(
        &self,
        protocol: Protocol,
        target: Target,
        access: Option<&Access>,
        carrier: &(dyn Extractor + Sync),
        decode: impl Future<Output = Result<Decoded<F>, Rejected>>,
        encode: impl FnOnce(&RequestContext, InferResponse, F, &OutputRegions) -> Out,
    ) -> Result<Out, ApiError> {
        self.infer_streamed(protocol, target, access, carrier, decode, encode, None)
            .await
    }

    /// [`Self::infer`] for a front end that can send a decoupled model's responses as they
    /// come (gRPC streams): they go to `responses`, and the answer only ends the request.
    #[allow(clippy::too_many_arguments)]
    pub async fn infer_streamed<F, Out>(
        &self,
        protocol: Protocol,
        target: Target,
        access: Option<&Access>,
        carrier: &(dyn Extractor + Sync),
        decode: impl Future<Output = Result<Decoded<F>, Rejected>>,
        encode: impl FnOnce(&RequestContext, InferResponse, F, &OutputRegions) -> Out,
        responses: Option<ResponseSink>,
    ) -> Result<Out, ApiError> {
        let mut context = RequestContext::new(protocol);
        context.responses = responses;
        if let Some(access) = access {
            access.apply(&mut context);
        }
        context.traceparent = carrier.get("traceparent").map(str::to_string);
        context.trace = self.telemetry.trace(
            protocol.as_str(),
            &target.model,
            &context.principal,
            carrier,
        );
        let decoded = match child(context.trace.as_ref(), "decode") {
            Some(stage) => decode.instrument(stage).await,
            None => decode.await,
        };
        let Decoded {
            request,
            id,
            format,
            shm,
        } = match decoded {
            Ok(decoded) => decoded,
            Err(Rejected { error: e, id }) => {
                // An unknown, unavailable or forbidden model says more than the body's faults
                // (and a caller out of scope learns nothing of the model's inputs).
                let e = match self.runtime.check_route(&target, &context) {
                    Err(unroutable) => ApiError::from(unroutable),
                    Ok(()) => e,
                };
                context.set_id(&id, || self.telemetry.make_id());
                let _span = self.span(&context, &target).entered();
                self.runtime.reject(&target, &context, e.kind, &e.message);
                return Err(e);
            }
        };
        context.set_id(&id, || self.telemetry.make_id());
        if let Some(name) = self.runtime.sticky_key_name(&target.model) {
            context.routing_key = carrier.get(&name.to_ascii_lowercase()).map(str::to_string);
        }
        // Every log line of the request from here on carries its id.
        let span = self.span(&context, &target);
        async move {
            let response = self.runtime.infer(&target, request, &context).await?;
            let _stage = child(context.trace.as_ref(), "encode").map(|s| s.entered());
            shm.write(&response)?;
            Ok(encode(&context, response, format, &shm))
        }
        .instrument(span)
        .await
    }
}
