//! `inferd models ...`: the repository, aliases, traffic policies and rollouts of a running
//! server, as tables for people or JSON for scripts (`--json`).

use crate::client::Method;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::Client;

#[derive(Args)]
pub struct ModelsArgs {
    /// The server's HTTP address.
    #[arg(
        long,
        env = "INFERD_URL",
        default_value = "http://127.0.0.1:8000",
        global = true
    )]
    url: String,

    /// Print the server's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Every model version with its state (the repository index).
    List,
    /// A model's aliases; `set ALIAS VERSION` or `delete ALIAS` to change them.
    Aliases {
        model: String,
        #[command(subcommand)]
        change: Option<AliasChange>,
    },
    /// A model's traffic policy; `set` or `clear` to change it.
    Traffic {
        model: String,
        #[command(subcommand)]
        change: Option<TrafficChange>,
    },
    /// A model's rollout; `start VERSION`, `promote`, `rollback`, `pause`, `resume`.
    Rollout {
        model: String,
        #[command(subcommand)]
        change: Option<RolloutChange>,
    },
    /// Every change to a model's aliases, traffic and rollouts.
    History { model: String },
}

#[derive(Subcommand)]
enum AliasChange {
    Set { alias: String, version: String },
    Delete { alias: String },
}

#[derive(Subcommand)]
enum TrafficChange {
    /// E.g. `--split 1=90,2=10 --shadow 3=50 --sticky x-user-id`.
    Set {
        /// version=weight pairs (or model:NAME=weight for a cross-model experiment).
        #[arg(long, value_delimiter = ',')]
        split: Vec<String>,
        /// version=percent pairs.
        #[arg(long, value_delimiter = ',')]
        shadow: Vec<String>,
        #[arg(long)]
        sticky: Option<String>,
    },
    Clear,
}

#[derive(Subcommand)]
enum RolloutChange {
    Start {
        version: String,
        #[arg(long, value_delimiter = ',', default_value = "5,25,50,100")]
        steps: Vec<f64>,
        #[arg(long, default_value_t = 60.0)]
        step_seconds: f64,
        #[arg(long, default_value_t = 0.01)]
        max_error_rate_increase: f64,
        #[arg(long, default_value_t = 1.5)]
        max_p99_ratio: f64,
        #[arg(long, default_value_t = 200)]
        min_requests: u64,
    },
    Promote,
    Rollback,
    Pause,
    Resume,
}

fn pairs(items: &[String], key: &str, value: &str) -> Result<Vec<Value>, String> {
    items
        .iter()
        .map(|item| {
            let (name, number) = item
                .split_once('=')
                .ok_or_else(|| format!("'{item}' must be NAME={value}"))?;
            let number: f64 = number
                .parse()
                .map_err(|_| format!("'{item}': {value} must be a number"))?;
            Ok(match name.strip_prefix("model:") {
                Some(model) => json!({ "model": model, value: number }),
                None => json!({ key: name, value: number }),
            })
        })
        .collect()
}

pub fn run(args: ModelsArgs) -> Result<(), String> {
    let client = Client::new(&args.url)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(execute(&client, args.command, args.json))
}

async fn execute(client: &Client, command: ModelsCommand, as_json: bool) -> Result<(), String> {
    let (value, table) = match command {
        ModelsCommand::List => {
            let v = client
                .ok(Method::POST, "/v2/repository/index", None)
                .await?;
            let rows = v
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|r| {
                            vec![
                                text(&r["name"]),
                                text(&r["version"]),
                                text(&r["state"]),
                                text(&r["reason"]),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            let t = table(&["MODEL", "VERSION", "STATE", "REASON"], rows);
            (v, t)
        }
        ModelsCommand::Aliases { model, change } => {
            let base = format!("/v2/models/{model}/aliases");
            let v = match change {
                None => client.ok(Method::GET, &base, None).await?,
                Some(AliasChange::Set { alias, version }) => {
                    let body = json!({ "version": version });
                    client
                        .ok(Method::PUT, &format!("{base}/{alias}"), Some(&body))
                        .await?
                }
                Some(AliasChange::Delete { alias }) => {
                    client
                        .ok(Method::DELETE, &format!("{base}/{alias}"), None)
                        .await?
                }
            };
            let rows = v["aliases"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| vec![k.clone(), text(v)]).collect())
                .unwrap_or_default();
            let t = table(&["ALIAS", "VERSION"], rows);
            (v, t)
        }
        ModelsCommand::Traffic { model, change } => {
            let path = format!("/v2/models/{model}/traffic");
            let v = match change {
                None => client.ok(Method::GET, &path, None).await?,
                Some(TrafficChange::Clear) => {
                    client.ok(Method::PUT, &path, Some(&json!({}))).await?
                }
                Some(TrafficChange::Set {
                    split,
                    shadow,
                    sticky,
                }) => {
                    let mut body = json!({
                        "split": pairs(&split, "version", "weight")?,
                        "shadow": pairs(&shadow, "version", "percent")?,
                    });
                    if let Some(s) = sticky {
                        body["sticky"] = json!(s);
                    }
                    client.ok(Method::PUT, &path, Some(&body)).await?
                }
            };
            let mut rows: Vec<Vec<String>> = v["arms"]
                .as_array()
                .map(|arms| {
                    arms.iter()
                        .map(|a| {
                            let target = a
                                .get("version")
                                .map(|v| format!("version {}", text(v)))
                                .or_else(|| a.get("model").map(|m| format!("model {}", text(m))))
                                .unwrap_or_default();
                            let share = a["share"].as_f64().unwrap_or(0.0) * 100.0;
                            let ready = if a["ready"].as_bool() == Some(true) {
                                "ready"
                            } else {
                                "not ready"
                            };
                            vec![
                                "split".into(),
                                target,
                                format!("{share:.1}%"),
                                ready.into(),
                                String::new(),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            for s in v["shadow_figures"].as_array().into_iter().flatten() {
                let agreement = s["agreement"]
                    .as_f64()
                    .map_or("-".into(), |a| format!("{:.2}% agree", a * 100.0));
                rows.push(vec![
                    "shadow".into(),
                    format!("version {}", text(&s["version"])),
                    String::new(),
                    agreement,
                    format!(
                        "match {} mismatch {} error {} dropped {}",
                        text(&s["match"]),
                        text(&s["mismatch"]),
                        text(&s["error"]),
                        text(&s["dropped"])
                    ),
                ]);
            }
            let mut t = format!("source: {}", text(&v["source"]));
            if let Some(sticky) = v.get("sticky") {
                t += &format!("   sticky: {}", text(sticky));
            }
            t += "\n";
            t += &table(&["ARM", "TARGET", "SHARE", "STATE", "FIGURES"], rows);
            (v, t)
        }
        ModelsCommand::Rollout { model, change } => {
            let path = format!("/v2/models/{model}/rollout");
            let v = match change {
                None => client.ok(Method::GET, &path, None).await?,
                Some(RolloutChange::Start {
                    version,
                    steps,
                    step_seconds,
                    max_error_rate_increase,
                    max_p99_ratio,
                    min_requests,
                }) => {
                    let body = json!({
                        "version": version, "steps": steps, "step_seconds": step_seconds,
                        "max_error_rate_increase": max_error_rate_increase,
                        "max_p99_ratio": max_p99_ratio, "min_requests": min_requests,
                    });
                    client.ok(Method::POST, &path, Some(&body)).await?
                }
                Some(action) => {
                    let name = match action {
                        RolloutChange::Promote => "promote",
                        RolloutChange::Rollback => "rollback",
                        RolloutChange::Pause => "pause",
                        _ => "resume",
                    };
                    client
                        .ok(Method::POST, &format!("{path}/{name}"), None)
                        .await?
                }
            };
            let head = format!(
                "version {} from {}: {} at {}% (step {} of {})\n",
                text(&v["canary"]),
                text(&v["baseline"]),
                text(&v["state"]),
                percent(&v["weight"]),
                v["step"].as_u64().unwrap_or(0) + 1,
                v["plan"]["steps"].as_array().map_or(0, Vec::len)
            );
            let rows = v["decisions"]
                .as_array()
                .map(|ds| {
                    ds.iter()
                        .map(|d| {
                            vec![
                                text(&d["time"]),
                                text(&d["action"]),
                                format!("{}%", percent(&d["weight"])),
                                text(&d["reason"]),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            let t = head + &table(&["TIME", "ACTION", "WEIGHT", "REASON"], rows);
            (v, t)
        }
        ModelsCommand::History { model } => {
            let v = client
                .ok(Method::GET, &format!("/v2/models/{model}/history"), None)
                .await?;
            let rows = v["history"]
                .as_array()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            vec![
                                text(&h["time"]),
                                format!("{} {}", text(&h["kind"]), text(&h["name"]))
                                    .trim()
                                    .to_string(),
                                text(&h["old"]),
                                text(&h["new"]),
                                text(&h["principal"]),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            let t = table(&["TIME", "WHAT", "OLD", "NEW", "BY"], rows);
            (v, t)
        }
    };
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        print!("{table}");
    }
    Ok(())
}

/// A share as people write it: 25, 12.5.
fn percent(v: &Value) -> String {
    let p = v.as_f64().unwrap_or(0.0);
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Columns padded to their widest cell; long cells are cut.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    const MAX: usize = 60;
    let cut = |s: &str| -> String {
        if s.chars().count() > MAX {
            s.chars().take(MAX - 1).collect::<String>() + "…"
        } else {
            s.to_string()
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let mut s = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out += &line(row);
    }
    out
}
