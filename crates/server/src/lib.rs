//! Protocol front ends. They turn wire formats into the runtime's requests and back, enforce
//! limits, and never know which backend runs a model.

mod error;
mod http;
mod v2;

pub use error::ApiError;
pub use http::{HttpConfig, router, serve};
