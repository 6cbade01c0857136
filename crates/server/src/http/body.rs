//! Reading request bodies (already capped by the limit layer) as the frames they arrived in.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use inferd_runtime::ErrorKind;

use super::limit::TooLarge;
use crate::ApiError;

/// The body's frames, in order, as they arrived (not joined: tensors are sliced from them).
pub async fn frames(mut body: Body) -> Result<Vec<Bytes>, ApiError> {
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(read_error)?;
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            frames.push(data);
        }
    }
    Ok(frames)
}

/// The whole body in one buffer (control requests: small JSON documents).
pub async fn read(body: Body) -> Result<Bytes, ApiError> {
    let mut frames = frames(body).await?;
    Ok(match frames.len() {
        0 => Bytes::new(),
        1 => frames.pop().unwrap_or_default(),
        _ => {
            let mut all = BytesMut::with_capacity(frames.iter().map(Bytes::len).sum());
            frames.iter().for_each(|f| all.extend_from_slice(f));
            all.freeze()
        }
    })
}

fn read_error(e: axum::Error) -> ApiError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(limit) = c.downcast_ref::<TooLarge>() {
            return ApiError::new(ErrorKind::TooLarge, limit.to_string());
        }
        cause = c.source();
    }
    ApiError::bad_request(format!("could not read the request body: {e}"))
}
