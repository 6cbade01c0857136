//! The request body limit, as a layer: every body is capped at `--max-request-size`. A body
//! over the limit (declared or not) is read on and thrown away up to [`DRAIN_LIMIT`], so the
//! client, usually still sending, gets the 413 rather than a reset; then it fails with
//! [`TooLarge`], which readers answer as 413 in the protocol's shape.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// Beyond this much thrown-away data the body ends at once (the connection is dropped).
const DRAIN_LIMIT: usize = 256 << 20;

/// A body went over the limit.
#[derive(Debug)]
pub struct TooLarge(pub usize);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "request body is larger than the limit of {} bytes (--max-request-size)",
            self.0
        )
    }
}

impl std::error::Error for TooLarge {}

pin_project_lite::pin_project! {
    struct Capped {
        #[pin]
        inner: Body,
        limit: usize,
        seen: usize,
        over: bool,
    }
}

impl http_body::Body for Capped {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut this = self.project();
        loop {
            let frame = match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) if *this.over => {
                    return Poll::Ready(Some(Err(axum::Error::new(TooLarge(*this.limit)))));
                }
                other => return other,
            };
            let len = frame.data_ref().map_or(0, Bytes::len);
            *this.seen = this.seen.saturating_add(len);
            if *this.seen > *this.limit {
                *this.over = true;
            }
            if !*this.over {
                return Poll::Ready(Some(Ok(frame)));
            }
            if *this.seen > DRAIN_LIMIT {
                return Poll::Ready(Some(Err(axum::Error::new(TooLarge(*this.limit)))));
            }
            // Over the limit: read on and drop, until the end.
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.over && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Caps the request's body at `limit` bytes.
pub async fn cap_body(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let declared_over = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64);
    let (parts, body) = request.into_parts();
    let capped = Capped {
        inner: body,
        limit,
        seen: 0,
        over: declared_over,
    };
    next.run(Request::from_parts(parts, Body::new(capped)))
        .await
}
