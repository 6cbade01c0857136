//! Run-time settings read and changed alike over HTTP and gRPC: the log settings (Triton's
//! logging extension) and the trace settings (Triton's trace extension, mapped onto inferd's
//! sampling of OTLP traces). The front ends only render them.

pub mod log;
pub mod trace;
