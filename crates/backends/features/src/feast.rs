//! `backend = "feast"`: entity keys to features through a Feast feature server.
//! `[parameters]`: `url` (the server, e.g. `http://feast:6566`), and either `features`
//! (references `view:feature`, sent as they are) or `feature_service` (sent by name;
//! `features` then lists which of its features make the output's columns, in order). The
//! server answers column-oriented (`results[i]` is `metadata.feature_names[i]`) and in an
//! order of its own, so columns are matched by name.

use inferd_core::ModelConfig;
use serde::Deserialize;
use serde_json::Value;

use crate::lookup::{EntityKey, Lookup, LookupBackend, Row, Store, StoreError};

/// The `feast` backend.
pub fn backend() -> LookupBackend {
    LookupBackend {
        name: "feast",
        open,
    }
}

fn open(config: &ModelConfig, lookup: &Lookup) -> Result<Box<dyn Store>, String> {
    let url = config
        .parameter("url")
        .ok_or("[parameters] url is required: the Feast feature server")?;
    if !url.starts_with("http://") {
        return Err(format!(
            "url = {url}: an http:// address (a feature server inside the cluster)"
        ));
    }
    let endpoint = format!("{}/get-online-features", url.trim_end_matches('/'));
    let selection = match config.parameter("feature_service") {
        Some(service) => ("feature_service", Value::String(service)),
        None => ("features", Value::from(lookup.features.clone())),
    };
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(lookup.timeout))
        .http_status_as_error(false)
        .build()
        .new_agent();
    Ok(Box::new(FeastStore {
        agent,
        url,
        endpoint,
        selection,
        entity: lookup.entity.clone(),
        columns: lookup.columns().map(str::to_string).collect(),
    }))
}

struct FeastStore {
    agent: ureq::Agent,
    url: String,
    endpoint: String,
    /// `features` or `feature_service`, and its value.
    selection: (&'static str, Value),
    entity: String,
    columns: Vec<String>,
}

#[derive(Deserialize)]
struct Answer {
    metadata: Metadata,
    results: Vec<Column>,
}

#[derive(Deserialize)]
struct Metadata {
    feature_names: Vec<String>,
}

#[derive(Deserialize)]
struct Column {
    values: Vec<Value>,
    #[serde(default)]
    statuses: Vec<String>,
}

impl Store for FeastStore {
    fn fetch(&self, keys: &[EntityKey]) -> Result<Vec<Row>, StoreError> {
        let entities: Vec<Value> = keys
            .iter()
            .map(|k| match k {
                EntityKey::Int(i) => Value::from(*i),
                EntityKey::Text(s) => Value::from(s.as_str()),
            })
            .collect();
        let mut body = serde_json::Map::new();
        body.insert(self.selection.0.into(), self.selection.1.clone());
        body.insert(
            "entities".into(),
            Value::Object(
                [(self.entity.clone(), Value::Array(entities))]
                    .into_iter()
                    .collect(),
            ),
        );
        let unreachable = |e: ureq::Error| {
            StoreError::Unavailable(format!("feature server {} is unreachable: {e}", self.url))
        };
        let mut response = self
            .agent
            .post(&self.endpoint)
            .send_json(Value::Object(body))
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(unreachable)?;
        match status {
            200..=299 => {}
            502..=504 => {
                return Err(StoreError::Unavailable(format!(
                    "feature server {} answered {status}: {}",
                    self.url,
                    error_message(&text)
                )));
            }
            _ => {
                return Err(StoreError::Failed(format!(
                    "feature server {} answered {status}: {}",
                    self.url,
                    error_message(&text)
                )));
            }
        }
        let answer: Answer = serde_json::from_str(&text).map_err(|e| {
            StoreError::Failed(format!(
                "feature server {} answered what is not get-online-features JSON: {e}",
                self.url
            ))
        })?;
        rows(&answer, &self.columns, keys.len()).map_err(StoreError::Failed)
    }
}

/// The answer's columns turned into rows, in our column order.
fn rows(answer: &Answer, columns: &[String], count: usize) -> Result<Vec<Row>, String> {
    let picked = columns
        .iter()
        .map(|c| {
            let at = answer
                .metadata
                .feature_names
                .iter()
                .position(|n| n == c || n.rsplit("__").next() == Some(c.as_str()))
                .ok_or_else(|| {
                    format!(
                        "the feature server's answer has no feature '{c}' (it has {})",
                        answer.metadata.feature_names.join(", ")
                    )
                })?;
            answer
                .results
                .get(at)
                .filter(|col| col.values.len() == count)
                .ok_or_else(|| format!("the answer's column '{c}' does not have {count} values"))
        })
        .collect::<Result<Vec<&Column>, String>>()?;
    (0..count)
        .map(|row| {
            picked
                .iter()
                .zip(columns)
                .map(|(col, name)| {
                    let status = col.statuses.get(row).map_or("PRESENT", String::as_str);
                    match (&col.values[row], status) {
                        (Value::Number(n), "PRESENT") => n
                            .as_f64()
                            .map(|v| Ok(v as f32))
                            .ok_or_else(|| format!("feature '{name}' = {n} is not a number")),
                        (Value::Bool(b), "PRESENT") => Ok(Ok(f32::from(u8::from(*b)))),
                        (Value::Null, _) => Ok(Err(if status == "PRESENT" {
                            "NULL_VALUE".to_string()
                        } else {
                            status.to_string()
                        })),
                        // A value that is there but not a number is the feature's type, not a
                        // gap: never defaulted.
                        (other, "PRESENT") => Err(format!(
                            "feature '{name}' = {other} is not a number (its type in Feast?)"
                        )),
                        (_, status) => Ok(Err(status.to_string())),
                    }
                })
                .collect()
        })
        .collect()
}

/// Feast's error bodies are a JSON string, sometimes holding a JSON object with a message.
fn error_message(body: &str) -> String {
    let inner = match serde_json::from_str::<Value>(body) {
        Ok(Value::String(s)) => s,
        Ok(Value::Object(o)) => o
            .get("detail")
            .map_or_else(|| body.to_string(), Value::to_string),
        _ => body.to_string(),
    };
    match serde_json::from_str::<Value>(&inner) {
        Ok(Value::Object(o)) => o
            .get("message")
            .and_then(Value::as_str)
            .map_or(inner.clone(), str::to_string),
        Ok(Value::String(s)) => s,
        _ => inner.trim_matches(|c| c == '\'' || c == '"').to_string(),
    }
    .chars()
    .take(500)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_matched_by_name_and_statuses_mark_missing_values() {
        // As Feast 0.67 answers: the join key first, the features in an order of its own.
        let answer: Answer = serde_json::from_str(
            r#"{"results":[
                {"values":[1,99],"statuses":["PRESENT","PRESENT"]},
                {"values":[5,null],"statuses":["PRESENT","NOT_FOUND"]},
                {"values":[10.5,null],"statuses":["PRESENT","NOT_FOUND"]}],
               "metadata":{"feature_names":["account_id","txn_count","amount_mean"]}}"#,
        )
        .expect("json");
        let rows = rows(&answer, &["amount_mean".into(), "txn_count".into()], 2).expect("rows");
        assert_eq!(rows[0], vec![Ok(10.5), Ok(5.0)]);
        assert_eq!(
            rows[1],
            vec![Err("NOT_FOUND".to_string()), Err("NOT_FOUND".to_string())]
        );
        let missing = super::rows(&answer, &["chargebacks".into()], 2).unwrap_err();
        assert!(missing.contains("no feature 'chargebacks'"), "{missing}");
    }

    #[test]
    fn error_bodies_read_as_their_message() {
        let body = r#""{\"module\": \"feast.errors\", \"class\": \"FeatureServiceNotFoundException\", \"message\": \"Feature service nope does not exist in project fraud\"}""#;
        assert_eq!(
            error_message(body),
            "Feature service nope does not exist in project fraud"
        );
        assert_eq!(
            error_message(r#""'Feature bogus not found in projection account_stats'""#),
            "Feature bogus not found in projection account_stats"
        );
    }
}
