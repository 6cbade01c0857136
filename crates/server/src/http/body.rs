use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::ApiError;

/// How much of an oversize body is read and thrown away so the client, which is usually still
/// sending, gets the 413 instead of a connection reset. Beyond this the connection is dropped.
const DRAIN_LIMIT: usize = 256 << 20;

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than the limit of {limit} bytes (--max-request-size)"),
    )
}

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub async fn read(headers: &HeaderMap, mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut over = declared.is_some_and(|n| n > limit as u64);
    let mut chunks: Vec<Bytes> = Vec::new();
    let (mut kept, mut drained) = (0usize, 0usize);
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if !over && kept + data.len() <= limit {
            kept += data.len();
            chunks.push(data);
            continue;
        }
        over = true;
        chunks.clear();
        drained += data.len();
        if drained > DRAIN_LIMIT {
            break;
        }
    }
    if over {
        return Err(too_large(limit));
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut all = BytesMut::with_capacity(kept);
            chunks.iter().for_each(|c| all.extend_from_slice(c));
            all.freeze()
        }
    })
}
