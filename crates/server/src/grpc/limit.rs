//! Rejects gRPC messages over the size limit with RESOURCE_EXHAUSTED, as gRPC's own servers do,
//! by reading each message's 5-byte length prefix as the request body streams in.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tonic::Status;
use tonic::body::Body as TonicBody;

#[derive(Debug, Clone)]
pub struct MessageLimitLayer {
    limit: usize,
}

impl MessageLimitLayer {
    pub fn new(limit: usize) -> Self {
        MessageLimitLayer { limit }
    }
}

impl<S> tower_layer::Layer<S> for MessageLimitLayer {
    type Service = MessageLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MessageLimit {
            inner,
            limit: self.limit,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MessageLimit<S> {
    inner: S,
    limit: usize,
}

impl<S> tower_service::Service<http::Request<TonicBody>> for MessageLimit<S>
where
    S: tower_service::Service<http::Request<TonicBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<TonicBody>) -> Self::Future {
        let limit = self.limit;
        self.inner
            .call(request.map(|body| TonicBody::new(LimitedBody::new(body, limit))))
    }
}

/// Passes the body through unchanged, failing as soon as a message prefix announces more than
/// `limit` bytes: nothing of that message is buffered.
struct LimitedBody {
    inner: TonicBody,
    limit: usize,
    prefix: [u8; 5],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
}

impl LimitedBody {
    fn new(inner: TonicBody, limit: usize) -> Self {
        LimitedBody {
            inner,
            limit,
            prefix: [0; 5],
            prefix_len: 0,
            remaining: 0,
        }
    }

    fn scan(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(data.len());
                self.remaining -= take;
                data = &data[take..];
                continue;
            }
            self.prefix[self.prefix_len] = data[0];
            self.prefix_len += 1;
            data = &data[1..];
            if self.prefix_len == self.prefix.len() {
                self.prefix_len = 0;
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]) as usize;
                if len > self.limit {
                    return Err(Status::resource_exhausted(format!(
                        "message of {len} bytes is larger than the limit of {} bytes (--max-request-size)",
                        self.limit
                    )));
                }
                self.remaining = len;
            }
        }
        Ok(())
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
            && let Err(status) = this.scan(data)
        {
            return Poll::Ready(Some(Err(status)));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(limit: usize) -> LimitedBody {
        LimitedBody::new(TonicBody::empty(), limit)
    }

    fn message(len: u32) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend(std::iter::repeat_n(7, len as usize));
        m
    }

    #[test]
    fn messages_within_the_limit_pass_in_any_chunking() {
        let mut b = body(10);
        let stream: Vec<u8> = [message(10), message(0), message(3)].concat();
        for chunk in stream.chunks(3) {
            b.scan(chunk).unwrap();
        }
        assert_eq!((b.prefix_len, b.remaining), (0, 0));
    }

    #[test]
    fn an_oversize_prefix_is_resource_exhausted() {
        let mut b = body(10);
        b.scan(&message(4)).unwrap();
        let err = b.scan(&message(11)[..5]).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.message().contains("11 bytes"), "{}", err.message());
    }
}
