//! What both stores share: the `[parameters]` of a lookup, the entity keys of a request, the
//! cache, defaults for missing values, and the model that serves it.
//!
//! - `entity = "account_id"`: the input tensor (INT64 or BYTES [batch, 1], as config.toml
//!   declares it; INT64 by default) and the key the store knows entities by;
//! - `features = [...]`: the output's columns, in order;
//! - `[parameters.defaults]`: a number per feature for a missing value (`nan` lets a tree
//!   model take its missing-value branch); a missing value without one fails the request;
//! - `on_unavailable = "fail" | "defaults"`: when the store cannot be reached in time, fail
//!   fast (default) or answer every feature's default;
//! - `timeout_ms` (1000), `cache_ttl_ms` (0: no cache), `cache_entries` (10000).

use std::path::Path;
use std::time::Duration;

use inferd_core::{
    Backend, BackendError, DataType, LoadedModel, ModelConfig, ModelSignature, Tensor, TensorData,
    TensorSpec,
};

use crate::cache::TtlCache;

/// One entity's values in feature order: a number, or why there is none (the store's status).
pub(crate) type Row = Vec<Result<f32, String>>;

/// An entity key as the request gave it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EntityKey {
    Int(i64),
    Text(String),
}

impl std::fmt::Display for EntityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntityKey::Int(i) => write!(f, "{i}"),
            EntityKey::Text(s) => f.write_str(s),
        }
    }
}

/// Why a store gave no rows.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// Not reachable in time (refused, timed out, a 5xx): `on_unavailable` applies.
    Unavailable(String),
    /// It answered, and the answer is an error (a bad feature name, a malformed value).
    Failed(String),
}

/// A feature store: one row per key, in order, each with one value per feature, in order.
pub(crate) trait Store: Send + Sync + 'static {
    fn fetch(&self, keys: &[EntityKey]) -> Result<Vec<Row>, StoreError>;
}

/// Opens a store from a model's config (its `[parameters]`), or says what is wrong.
pub(crate) type Open = fn(&ModelConfig, &Lookup) -> Result<Box<dyn Store>, String>;

/// A lookup backend: its name (config.toml's `backend`, also its platform) and how it opens
/// its store from the model's `[parameters]`; the rest is the same for every store.
pub struct LookupBackend {
    pub(crate) name: &'static str,
    pub(crate) open: Open,
}

impl Backend for LookupBackend {
    fn name(&self) -> &'static str {
        self.name
    }

    fn platform(&self) -> &'static str {
        self.name
    }

    /// Only when config.toml asks for it: it has no model file.
    fn accepts(&self, _version_dir: &Path, _config: &ModelConfig) -> bool {
        false
    }

    fn load(
        &self,
        version_dir: &Path,
        config: &ModelConfig,
    ) -> Result<Box<dyn LoadedModel>, BackendError> {
        let fail = |reason: String| BackendError::Load {
            path: version_dir.to_path_buf(),
            reason,
        };
        let lookup = Lookup::parse(config).map_err(fail)?;
        let store = (self.open)(config, &lookup).map_err(fail)?;
        Ok(lookup.model(store))
    }
}

/// The parsed `[parameters]` both stores share.
pub(crate) struct Lookup {
    pub entity: String,
    pub entity_type: DataType,
    /// As configured (Feast's `view:feature` references keep their view).
    pub features: Vec<String>,
    defaults: Vec<Option<f32>>,
    defaults_when_unavailable: bool,
    pub timeout: Duration,
    cache_ttl: Duration,
    cache_entries: usize,
}

impl Lookup {
    pub(crate) fn parse(config: &ModelConfig) -> Result<Lookup, String> {
        let entity = config
            .parameter("entity")
            .ok_or("[parameters] entity is required: the entity key's name (and input's)")?;
        let entity_type = match config.inputs.iter().find(|i| i.name == entity) {
            None => DataType::I64,
            Some(spec) if matches!(spec.datatype, DataType::I64 | DataType::Bytes) => spec.datatype,
            Some(spec) => {
                return Err(format!(
                    "input '{entity}' is {}: entity keys are INT64 or BYTES",
                    spec.datatype.as_str()
                ));
            }
        };
        if let Some(other) = config.inputs.iter().find(|i| i.name != entity) {
            return Err(format!(
                "input '{}' is not the entity ('{entity}'): a lookup takes one input",
                other.name
            ));
        }
        let features = match config.parameters.get("features") {
            Some(toml::Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .filter(|f| !f.is_empty())
                .ok_or("features must be a non-empty list of strings")?,
            Some(_) => return Err("features must be a list of strings".into()),
            None => return Err("[parameters] features is required: the output's columns".into()),
        };
        let defaults_table = match config.parameters.get("defaults") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t.clone(),
            Some(_) => return Err("defaults must be a table: feature = number".into()),
        };
        let columns: Vec<&str> = features.iter().map(|f| column(f)).collect();
        if let Some(unknown) = defaults_table
            .keys()
            .find(|k| !columns.contains(&k.as_str()))
        {
            return Err(format!(
                "defaults names '{unknown}', which is not one of the features"
            ));
        }
        let defaults = columns
            .iter()
            .map(|c| match defaults_table.get(*c) {
                None => Ok(None),
                Some(toml::Value::Float(f)) => Ok(Some(*f as f32)),
                Some(toml::Value::Integer(i)) => Ok(Some(*i as f32)),
                Some(other) => Err(format!("defaults.{c} = {other}: a number")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let defaults_when_unavailable = match config.parameter("on_unavailable").as_deref() {
            None | Some("fail") => false,
            Some("defaults") => true,
            Some(other) => {
                return Err(format!(
                    "on_unavailable = \"{other}\": \"fail\" or \"defaults\""
                ));
            }
        };
        if defaults_when_unavailable && let Some(i) = defaults.iter().position(Option::is_none) {
            return Err(format!(
                "on_unavailable = \"defaults\" needs a default for every feature; '{}' has none",
                columns[i]
            ));
        }
        let millis = |key: &str, default: u64| -> Result<u64, String> {
            config.parameter(key).map_or(Ok(default), |v| {
                v.parse()
                    .map_err(|_| format!("{key} = {v}: a whole number of milliseconds"))
            })
        };
        let timeout = Duration::from_millis(millis("timeout_ms", 1000)?.max(1));
        let cache_ttl = Duration::from_millis(millis("cache_ttl_ms", 0)?);
        let cache_entries = config.parameter("cache_entries").map_or(Ok(10_000), |v| {
            v.parse()
                .map_err(|_| format!("cache_entries = {v}: a whole number"))
        })?;
        Ok(Lookup {
            entity,
            entity_type,
            features,
            defaults,
            defaults_when_unavailable,
            timeout,
            cache_ttl,
            cache_entries,
        })
    }

    /// The names of the output's columns (a Feast reference without its view).
    pub(crate) fn columns(&self) -> impl Iterator<Item = &str> {
        self.features.iter().map(|f| column(f))
    }

    fn model(self, store: Box<dyn Store>) -> Box<dyn LoadedModel> {
        let signature = ModelSignature {
            inputs: vec![TensorSpec::new(
                self.entity.clone(),
                self.entity_type,
                vec![-1, 1],
            )],
            outputs: vec![TensorSpec::new(
                "features",
                DataType::F32,
                vec![-1, self.features.len() as i64],
            )],
        };
        let cache = TtlCache::new(self.cache_ttl, self.cache_entries);
        Box::new(LookupModel {
            lookup: self,
            store,
            cache,
            signature,
        })
    }
}

/// `view:feature` → `feature`; a bare name stays.
fn column(reference: &str) -> &str {
    reference.rsplit(':').next().unwrap_or(reference)
}

struct LookupModel {
    lookup: Lookup,
    store: Box<dyn Store>,
    cache: Option<TtlCache>,
    signature: ModelSignature,
}

impl LookupModel {
    fn keys(&self, input: &Tensor) -> Result<Vec<EntityKey>, String> {
        match input.datatype() {
            DataType::I64 => Ok(input
                .to_slice::<i64>()
                .ok_or("entity keys must be INT64")?
                .iter()
                .map(|k| EntityKey::Int(*k))
                .collect()),
            _ => input
                .byte_elements()
                .map(|k| {
                    std::str::from_utf8(k)
                        .map(|s| EntityKey::Text(s.to_string()))
                        .map_err(|_| format!("entity key {k:?} is not UTF-8 text"))
                })
                .collect(),
        }
    }

    /// Cached rows first; one store call for the rest.
    fn rows(&self, keys: &[EntityKey]) -> Result<Vec<Row>, BackendError> {
        let mut rows: Vec<Option<Row>> = match &self.cache {
            Some(cache) => keys.iter().map(|k| cache.get(&cache_key(k))).collect(),
            None => vec![None; keys.len()],
        };
        let missing: Vec<usize> = (0..keys.len()).filter(|i| rows[*i].is_none()).collect();
        if !missing.is_empty() {
            let wanted: Vec<EntityKey> = missing.iter().map(|i| keys[*i].clone()).collect();
            let (fetched, answered) = match self.store.fetch(&wanted) {
                Ok(fetched) if fetched.len() == wanted.len() => (fetched, true),
                Ok(fetched) => {
                    return Err(BackendError::Inference(format!(
                        "the feature store answered {} rows for {} entities",
                        fetched.len(),
                        wanted.len()
                    )));
                }
                Err(StoreError::Unavailable(why)) if self.lookup.defaults_when_unavailable => {
                    tracing::warn!(error = %why, "feature store unavailable: answering defaults");
                    let none = vec![Err("unavailable".to_string()); self.lookup.features.len()];
                    (vec![none; wanted.len()], false)
                }
                Err(StoreError::Unavailable(why) | StoreError::Failed(why)) => {
                    return Err(BackendError::Inference(why));
                }
            };
            for (i, row) in missing.into_iter().zip(fetched) {
                // Only what the store answered is cached, never the outage defaults.
                if let Some(cache) = self.cache.as_ref().filter(|_| answered) {
                    cache.put(cache_key(&keys[i]), row.clone());
                }
                rows[i] = Some(row);
            }
        }
        Ok(rows.into_iter().map(Option::unwrap_or_default).collect())
    }
}

fn cache_key(key: &EntityKey) -> String {
    match key {
        EntityKey::Int(i) => format!("i{i}"),
        EntityKey::Text(s) => format!("s{s}"),
    }
}

impl LoadedModel for LookupModel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), String> {
        inputs.first().map_or(Ok(()), |t| self.keys(t).map(drop))
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let fail = BackendError::Inference;
        let input = inputs
            .first()
            .ok_or_else(|| fail("no entity input".into()))?;
        let keys = self.keys(input).map_err(fail)?;
        let rows = self.rows(&keys)?;
        let width = self.lookup.features.len();
        let mut values = Vec::with_capacity(keys.len() * width);
        let columns: Vec<&str> = self.lookup.columns().collect();
        for (key, row) in keys.iter().zip(&rows) {
            for ((value, default), column) in row.iter().zip(&self.lookup.defaults).zip(&columns) {
                match (value, default) {
                    (Ok(v), _) => values.push(*v),
                    (Err(_), Some(d)) => values.push(*d),
                    (Err(status), None) => {
                        return Err(fail(format!(
                            "feature '{column}' of {} {key} is {status} and has no default \
                             ([parameters.defaults] {column} = ...)",
                            self.lookup.entity
                        )));
                    }
                }
            }
        }
        let tensor = Tensor::new(vec![keys.len(), width], TensorData::F32(values)).map_err(fail)?;
        Ok(vec![tensor])
    }

    /// It waits on a network store: never on an async worker thread.
    fn may_run_inline(&self) -> bool {
        false
    }
}
