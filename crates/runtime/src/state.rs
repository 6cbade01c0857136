//! The state store: aliases, traffic policies and rollouts, with a history of every change.
//! An embedded SQLite file (`--state-dir`; in memory without one) or PostgreSQL (`--state-url`)
//! so that replicas behind a load balancer agree: every change bumps a revision that each
//! replica polls, reloading what changed.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::time::rfc3339;

/// What a stored value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// name = alias, value = version number.
    Alias,
    /// name = "", value = the policy's JSON.
    Traffic,
    /// name = "", value = the rollout's JSON.
    Rollout,
    /// name = the source, value = the version it gives (e.g. where an MLflow alias points).
    Source,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Alias => "alias",
            Kind::Traffic => "traffic",
            Kind::Rollout => "rollout",
            Kind::Source => "source",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "alias" => Some(Kind::Alias),
            "traffic" => Some(Kind::Traffic),
            "rollout" => Some(Kind::Rollout),
            "source" => Some(Kind::Source),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub model: String,
    pub kind: Kind,
    pub name: String,
    pub value: String,
}

/// A change to make: `value` None deletes.
#[derive(Debug, Clone)]
pub struct Change {
    pub model: String,
    pub kind: Kind,
    pub name: String,
    pub value: Option<String>,
    pub principal: String,
    pub reason: String,
}

/// One entry of a model's change history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryEntry {
    pub time: String,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
    pub principal: String,
    pub reason: String,
}

pub enum StateStore {
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Postgres(tokio_postgres::Client),
}

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inferd_state (
    model TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (model, kind, name));
CREATE TABLE IF NOT EXISTS inferd_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, model TEXT NOT NULL,
    kind TEXT NOT NULL, name TEXT NOT NULL, old TEXT, new TEXT, principal TEXT NOT NULL,
    reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inferd_revision (id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL);
INSERT OR IGNORE INTO inferd_revision (id, revision) VALUES (1, 0);
";

const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inferd_state (
    model TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (model, kind, name));
CREATE TABLE IF NOT EXISTS inferd_history (
    id BIGSERIAL PRIMARY KEY, time TEXT NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL,
    name TEXT NOT NULL, old TEXT, new TEXT, principal TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inferd_revision (id INTEGER PRIMARY KEY CHECK (id = 1), revision BIGINT NOT NULL);
INSERT INTO inferd_revision (id, revision) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
";

fn sql_error(e: impl std::fmt::Display) -> String {
    format!("state store: {e}")
}

impl StateStore {
    /// An SQLite file in `dir` (created), or in memory: state then lives until restart.
    pub fn sqlite(dir: Option<&Path>) -> Result<StateStore, String> {
        let connection = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    format!("cannot create the state directory {}: {e}", dir.display())
                })?;
                let path = dir.join("state.sqlite3");
                let c = rusqlite::Connection::open(&path)
                    .map_err(|e| format!("cannot open the state store {}: {e}", path.display()))?;
                // Several processes may share one file: wait for each other's locks.
                c.busy_timeout(std::time::Duration::from_secs(5))
                    .map_err(sql_error)?;
                c.pragma_update(None, "journal_mode", "WAL")
                    .map_err(sql_error)?;
                c
            }
            None => rusqlite::Connection::open_in_memory().map_err(sql_error)?,
        };
        connection.execute_batch(SQLITE_SCHEMA).map_err(sql_error)?;
        Ok(StateStore::Sqlite(Arc::new(Mutex::new(connection))))
    }

    /// PostgreSQL at `url` (`postgres://user:pass@host:port/db`); the connection is driven on
    /// the async runtime.
    pub async fn postgres(url: &str) -> Result<StateStore, String> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("cannot connect to the state store {}: {e}", redact(url)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!("state store connection failed: {e}");
            }
        });
        client
            .batch_execute(POSTGRES_SCHEMA)
            .await
            .map_err(sql_error)?;
        Ok(StateStore::Postgres(client))
    }

    /// Runs `f` on the SQLite connection off the async threads.
    async fn sqlite_call<T: Send + 'static>(
        c: &Arc<Mutex<rusqlite::Connection>>,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let c = Arc::clone(c);
        tokio::task::spawn_blocking(move || {
            let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut c)
        })
        .await
        .map_err(sql_error)?
        .map_err(sql_error)
    }

    /// The revision: it changes with every change made by any replica.
    pub async fn revision(&self) -> Result<i64, String> {
        match self {
            StateStore::Sqlite(c) => {
                Self::sqlite_call(c, |c| {
                    c.query_row(
                        "SELECT revision FROM inferd_revision WHERE id = 1",
                        [],
                        |r| r.get(0),
                    )
                })
                .await
            }
            StateStore::Postgres(c) => c
                .query_one("SELECT revision FROM inferd_revision WHERE id = 1", &[])
                .await
                .map(|r| r.get(0))
                .map_err(sql_error),
        }
    }

    /// Everything stored, and the revision it is as of.
    pub async fn snapshot(&self) -> Result<(i64, Vec<Row>), String> {
        let raw: (i64, Vec<(String, String, String, String)>) = match self {
            StateStore::Sqlite(c) => {
                Self::sqlite_call(c, |c| {
                    let tx = c.transaction()?;
                    let revision = tx.query_row(
                        "SELECT revision FROM inferd_revision WHERE id = 1",
                        [],
                        |r| r.get(0),
                    )?;
                    let rows = {
                        let mut q =
                            tx.prepare("SELECT model, kind, name, value FROM inferd_state")?;
                        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                            .collect::<rusqlite::Result<Vec<_>>>()?
                    };
                    Ok((revision, rows))
                })
                .await?
            }
            StateStore::Postgres(c) => {
                let revision = c
                    .query_one("SELECT revision FROM inferd_revision WHERE id = 1", &[])
                    .await
                    .map_err(sql_error)?
                    .get(0);
                let rows = c
                    .query("SELECT model, kind, name, value FROM inferd_state", &[])
                    .await
                    .map_err(sql_error)?
                    .into_iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                    .collect();
                (revision, rows)
            }
        };
        let rows = raw
            .1
            .into_iter()
            .filter_map(|(model, kind, name, value)| {
                Some(Row {
                    model,
                    kind: Kind::parse(&kind)?,
                    name,
                    value,
                })
            })
            .collect();
        Ok((raw.0, rows))
    }

    /// Makes a change and records it in the history, in one transaction; the old value is
    /// returned.
    pub async fn apply(&self, change: Change) -> Result<Option<String>, String> {
        let time = rfc3339(std::time::SystemTime::now());
        match self {
            StateStore::Sqlite(c) => {
                Self::sqlite_call(c, move |c| {
                    let tx = c.transaction()?;
                    let old: Option<String> = tx
                        .query_row(
                            "SELECT value FROM inferd_state WHERE model = ?1 AND kind = ?2 AND name = ?3",
                            (&change.model, change.kind.as_str(), &change.name),
                            |r| r.get(0),
                        )
                        .ok();
                    match &change.value {
                        Some(v) => tx.execute(
                            "INSERT INTO inferd_state (model, kind, name, value) VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT (model, kind, name) DO UPDATE SET value = excluded.value",
                            (&change.model, change.kind.as_str(), &change.name, v),
                        )?,
                        None => tx.execute(
                            "DELETE FROM inferd_state WHERE model = ?1 AND kind = ?2 AND name = ?3",
                            (&change.model, change.kind.as_str(), &change.name),
                        )?,
                    };
                    tx.execute(
                        "INSERT INTO inferd_history (time, model, kind, name, old, new, principal, reason)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        (
                            &time,
                            &change.model,
                            change.kind.as_str(),
                            &change.name,
                            &old,
                            &change.value,
                            &change.principal,
                            &change.reason,
                        ),
                    )?;
                    tx.execute("UPDATE inferd_revision SET revision = revision + 1 WHERE id = 1", [])?;
                    tx.commit()?;
                    Ok(old)
                })
                .await
            }
            StateStore::Postgres(c) => {
                // One statement block in a transaction: replicas never see half a change.
                c.batch_execute("BEGIN").await.map_err(sql_error)?;
                let result = async {
                    let old: Option<String> = c
                        .query_opt(
                            "SELECT value FROM inferd_state WHERE model = $1 AND kind = $2 AND name = $3 FOR UPDATE",
                            &[&change.model, &change.kind.as_str(), &change.name],
                        )
                        .await?
                        .map(|r| r.get(0));
                    match &change.value {
                        Some(v) => c
                            .execute(
                                "INSERT INTO inferd_state (model, kind, name, value) VALUES ($1, $2, $3, $4)
                                 ON CONFLICT (model, kind, name) DO UPDATE SET value = EXCLUDED.value",
                                &[&change.model, &change.kind.as_str(), &change.name, v],
                            )
                            .await?,
                        None => c
                            .execute(
                                "DELETE FROM inferd_state WHERE model = $1 AND kind = $2 AND name = $3",
                                &[&change.model, &change.kind.as_str(), &change.name],
                            )
                            .await?,
                    };
                    c.execute(
                        "INSERT INTO inferd_history (time, model, kind, name, old, new, principal, reason)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        &[
                            &time,
                            &change.model,
                            &change.kind.as_str(),
                            &change.name,
                            &old,
                            &change.value,
                            &change.principal,
                            &change.reason,
                        ],
                    )
                    .await?;
                    c.execute(
                        "UPDATE inferd_revision SET revision = revision + 1 WHERE id = 1",
                        &[],
                    )
                    .await?;
                    Ok::<_, tokio_postgres::Error>(old)
                }
                .await;
                match result {
                    Ok(old) => {
                        c.batch_execute("COMMIT").await.map_err(sql_error)?;
                        Ok(old)
                    }
                    Err(e) => {
                        let _ = c.batch_execute("ROLLBACK").await;
                        Err(sql_error(e))
                    }
                }
            }
        }
    }

    /// Every change to `model`, oldest first.
    pub async fn history(&self, model: &str) -> Result<Vec<HistoryEntry>, String> {
        type Raw = (
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            String,
            String,
        );
        let model = model.to_string();
        let raw: Vec<Raw> = match self {
            StateStore::Sqlite(c) => {
                Self::sqlite_call(c, move |c| {
                    let mut q = c.prepare(
                        "SELECT time, kind, name, old, new, principal, reason FROM inferd_history
                         WHERE model = ?1 ORDER BY id",
                    )?;
                    q.query_map([&model], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?
            }
            StateStore::Postgres(c) => c
                .query(
                    "SELECT time, kind, name, old, new, principal, reason FROM inferd_history
                     WHERE model = $1 ORDER BY id",
                    &[&model],
                )
                .await
                .map_err(sql_error)?
                .into_iter()
                .map(|r| {
                    (
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        r.get(4),
                        r.get(5),
                        r.get(6),
                    )
                })
                .collect(),
        };
        Ok(raw
            .into_iter()
            .filter_map(|(time, kind, name, old, new, principal, reason)| {
                Some(HistoryEntry {
                    time,
                    kind: Kind::parse(&kind)?.as_str(),
                    name,
                    old,
                    new,
                    principal,
                    reason,
                })
            })
            .collect())
    }
}

/// A connection URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: Kind, name: &str, value: Option<&str>) -> Change {
        Change {
            model: "m".into(),
            kind,
            name: name.into(),
            value: value.map(str::to_string),
            principal: "ci".into(),
            reason: "test".into(),
        }
    }

    #[tokio::test]
    async fn changes_are_stored_with_their_history_and_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("inferd-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let store = StateStore::sqlite(Some(&dir)).unwrap();
            let r0 = store.revision().await.unwrap();
            assert_eq!(
                store
                    .apply(change(Kind::Alias, "production", Some("1")))
                    .await
                    .unwrap(),
                None
            );
            assert_eq!(
                store
                    .apply(change(Kind::Alias, "production", Some("2")))
                    .await
                    .unwrap(),
                Some("1".into())
            );
            store
                .apply(change(Kind::Traffic, "", Some("{}")))
                .await
                .unwrap();
            store.apply(change(Kind::Traffic, "", None)).await.unwrap();
            assert_eq!(store.revision().await.unwrap(), r0 + 4);
        }
        let store = StateStore::sqlite(Some(&dir)).unwrap();
        let (_, rows) = store.snapshot().await.unwrap();
        assert_eq!(
            rows,
            [Row {
                model: "m".into(),
                kind: Kind::Alias,
                name: "production".into(),
                value: "2".into()
            }]
        );
        let history = store.history("m").await.unwrap();
        assert_eq!(history.len(), 4);
        assert_eq!(
            (history[1].old.as_deref(), history[1].new.as_deref()),
            (Some("1"), Some("2"))
        );
        assert_eq!(history[3].new, None);
        assert!(history[0].time.ends_with('Z') && history[0].principal == "ci");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact("postgres://inferd:secret@127.0.0.1:5432/db"),
            "postgres://inferd:***@127.0.0.1:5432/db"
        );
        assert_eq!(redact("postgres://localhost/db"), "postgres://localhost/db");
    }
}
