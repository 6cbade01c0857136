//! What model metadata, configuration and statistics say, built once as values. REST answers
//! them as JSON (their serde form is the protocol's), gRPC renders them to protobuf. Each
//! renderer takes its value apart field by field, so a field added to a value cannot be left out
//! of either answer.

pub mod config;
pub mod metadata;
pub mod sequence;
pub mod statistics;

pub use config::ModelConfiguration;
pub use metadata::ModelMetadata;
pub use statistics::Statistics;
