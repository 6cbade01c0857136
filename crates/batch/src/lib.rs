//! Batch prediction: score files of rows (CSV, JSON Lines) with a model, in input order, with
//! a checkpoint to resume from, an errors file, shards, and a summary. Rows reach the model
//! through a [`Scorer`]: the runtime in this process (`runtime.infer`, so the scheduler and
//! dynamic batcher of `serve`) or running servers (the CLI's HTTP scorer).

mod cell_text;
mod checkpoint;
mod encode;
mod error;
mod format;
mod job;
mod location;
mod model;
mod output;
mod parquet_file;
mod parquet_io;
mod parquet_read;
mod reader;
mod scorer;
mod value;

pub use error::BatchError;
pub use format::Format;
pub use job::{Job, Progress, Shard, Summary, run};
pub use location::Location;
pub use model::ModelInfo;
pub use scorer::{InProcess, ScoreFuture, Scored, Scorer};

#[cfg(test)]
mod tests;
