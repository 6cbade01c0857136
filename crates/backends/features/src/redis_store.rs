//! `backend = "redis"`: features a team writes itself as Redis hashes, one per entity.
//! `[parameters]`: `url` (`redis://host:6379/0`, default the local server), `key` (the hash's
//! key with the entity in braces, e.g. `"account:{account_id}"`), and `features` (the hash
//! fields, in output order). A batch is one pipelined `HMGET` per entity, one round trip.

use std::sync::{Mutex, MutexGuard};

use inferd_core::ModelConfig;

use crate::lookup::{EntityKey, Lookup, LookupBackend, Row, Store, StoreError};

/// The `redis` backend.
pub fn backend() -> LookupBackend {
    LookupBackend {
        name: "redis",
        open,
    }
}

fn open(config: &ModelConfig, lookup: &Lookup) -> Result<Box<dyn Store>, String> {
    let url = config
        .parameter("url")
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url.as_str()).map_err(|e| format!("url = {url}: {e}"))?;
    let placeholder = format!("{{{}}}", lookup.entity);
    let key = config.parameter("key").ok_or_else(|| {
        format!(
            "[parameters] key is required: the hash's key, e.g. \"{}:{placeholder}\"",
            lookup.entity
        )
    })?;
    if !key.contains(&placeholder) {
        return Err(format!(
            "key = \"{key}\" must hold {placeholder}, where the entity's key goes"
        ));
    }
    Ok(Box::new(RedisStore {
        client,
        url,
        key,
        placeholder,
        fields: lookup.features.clone(),
        timeout: lookup.timeout,
        idle: Mutex::default(),
    }))
}

struct RedisStore {
    client: redis::Client,
    url: String,
    key: String,
    placeholder: String,
    fields: Vec<String>,
    timeout: std::time::Duration,
    /// Connections between calls: one per concurrent execution at most.
    idle: Mutex<Vec<redis::Connection>>,
}

impl RedisStore {
    fn idle(&self) -> MutexGuard<'_, Vec<redis::Connection>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn connect(&self) -> Result<redis::Connection, redis::RedisError> {
        if let Some(connection) = self.idle().pop() {
            return Ok(connection);
        }
        let connection = self.client.get_connection_with_timeout(self.timeout)?;
        connection.set_read_timeout(Some(self.timeout))?;
        connection.set_write_timeout(Some(self.timeout))?;
        Ok(connection)
    }

    fn error(&self, e: &redis::RedisError) -> StoreError {
        let message = format!("redis {}: {e}", self.url);
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
        {
            StoreError::Unavailable(message)
        } else {
            StoreError::Failed(message)
        }
    }
}

impl Store for RedisStore {
    fn fetch(&self, keys: &[EntityKey]) -> Result<Vec<Row>, StoreError> {
        let mut connection = self.connect().map_err(|e| self.error(&e))?;
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("HMGET")
                .arg(self.key.replace(&self.placeholder, &key.to_string()))
                .arg(&self.fields);
        }
        // A connection that failed is dropped, not put back.
        let answers: Vec<Vec<Option<String>>> =
            pipe.query(&mut connection).map_err(|e| self.error(&e))?;
        self.idle().push(connection);
        keys.iter()
            .zip(answers)
            .map(|(key, values)| {
                values
                    .into_iter()
                    .zip(&self.fields)
                    .map(|(value, field)| match value {
                        None => Ok(Err("not in the hash".to_string())),
                        // A value that is there but wrong is the writer's bug: never defaulted.
                        Some(text) => text.trim().parse::<f32>().map(Ok).map_err(|_| {
                            StoreError::Failed(format!(
                                "redis {}: {} field {field} = {text:?} is not a number",
                                self.url,
                                self.key.replace(&self.placeholder, &key.to_string())
                            ))
                        }),
                    })
                    .collect()
            })
            .collect()
    }
}
