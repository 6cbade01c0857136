//! Feature-store lookups as models: entity keys in, feature values out, so a pipeline can turn
//! an account id into the tensor a model takes. Two stores:
//! - `backend = "feast"`: a Feast feature server's `POST /get-online-features`;
//! - `backend = "redis"`: Redis hashes written by the team itself (one `HMGET` per entity,
//!   pipelined per batch), the lowest-latency path.
//!
//! Both take `[parameters]` read by [`lookup::Lookup`]: the entity (its name is the input
//! tensor's and Feast's join key), the features (the output's columns, in order), a default
//! per feature for missing values, what to do when the store is down, a timeout and a small
//! TTL cache. Output `features` FP32 [batch, features].

mod cache;
mod feast;
mod lookup;
mod redis_store;

pub use feast::backend as feast;
pub use lookup::LookupBackend;
pub use redis_store::backend as redis;
