//! The V1 REST front door: TF Serving's predict API (`/v1/models/{m}[/versions/{v}|/labels/{l}]
//! :predict`, row `instances` or columnar `inputs`, `{"b64": ...}` for bytes), model status and
//! metadata in TF Serving's shapes, and KServe V1's model list and readiness. Requests are
//! turned into the runtime's requests by the model's metadata (input names and datatypes) and go
//! through the same pipeline as V2.

pub mod decode;
pub mod encode;
pub mod path;
pub mod status;

pub use path::{Action, V1Path};
