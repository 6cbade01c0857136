//! `inferd audit verify|find|replay DIR`: check the audit log's hash chains, look records up,
//! re-run recorded inputs against another version and report how the answers agree.

use std::io::IsTerminal;
use std::path::PathBuf;

use base64::Engine;
use clap::{Args, Subcommand};
use inferd_core::{NamedTensor, Tensor};
use inferd_runtime::audit::{FindQuery, find, verify::verify};
use serde_json::{Value, json};

use crate::client::Client;

#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every segment's hash chain; names the first record that does not check out.
    Verify { dir: PathBuf },
    /// Print matching records as JSON lines (a table on a terminal).
    Find {
        dir: PathBuf,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        version: Option<String>,
        /// RFC 3339 time, e.g. 2026-12-01T10:00:00Z.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        /// JSON lines even on a terminal.
        #[arg(long)]
        json: bool,
    },
    /// Re-run the recorded inputs of MODEL (records that kept payloads) against VERSION and
    /// compare with the recorded outputs, as a shadow comparison does.
    Replay {
        dir: PathBuf,
        #[arg(long)]
        model: String,
        #[arg(long)]
        against: String,
        #[arg(long, env = "INFERD_URL", default_value = "http://127.0.0.1:8000")]
        url: String,
        /// Largest difference of float outputs that still agrees (models without a label).
        #[arg(long, default_value_t = inferd_runtime::DEFAULT_TOLERANCE)]
        tolerance: f64,
        /// Records received from this time on (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        /// At most this many records, the oldest first.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: AuditArgs) -> Result<(), String> {
    match args.command {
        AuditCommand::Verify { dir } => {
            let report = verify(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            match report.first_bad {
                None => {
                    println!(
                        "ok: {} records in {} segments, every hash and chain checks out",
                        report.records, report.segments
                    );
                    Ok(())
                }
                Some(bad) => Err(format!(
                    "audit log does not verify: {bad} ({} records checked before it)",
                    report.records
                )),
            }
        }
        AuditCommand::Find {
            dir,
            id,
            model,
            version,
            since,
            until,
            json,
        } => {
            let query = FindQuery {
                id,
                model,
                version,
                since,
                until,
            };
            let table = !json && std::io::stdout().is_terminal();
            if table {
                println!(
                    "{:<24} {:<28} {:<20} {:<8} {:<18} {:>10}",
                    "ID", "RECEIVED", "MODEL", "VERSION", "STATUS", "LATENCY_US"
                );
            }
            let found = find(&dir, &query, |line| {
                if !table {
                    println!("{line}");
                    return;
                }
                let r: Value = serde_json::from_str(line).unwrap_or_default();
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                println!(
                    "{:<24} {:<28} {:<20} {:<8} {:<18} {:>10}",
                    s("id"),
                    s("received_at"),
                    s("model_name"),
                    s("model_version"),
                    r["status"]["code"].as_str().unwrap_or_default(),
                    r["latency_us"]
                );
            })
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            if table {
                println!("{found} records");
            }
            Ok(())
        }
        AuditCommand::Replay {
            dir,
            model,
            against,
            url,
            tolerance,
            since,
            until,
            limit,
            json,
        } => {
            let client = Client::new(&url)?;
            let mut records = Vec::new();
            let query = FindQuery {
                model: Some(model.clone()),
                since,
                until,
                ..Default::default()
            };
            // Answered requests that kept their inputs (not shadow copies).
            find(&dir, &query, |line| {
                if limit.is_some_and(|n| records.len() >= n) {
                    return;
                }
                if let Ok(r) = serde_json::from_str::<Value>(line)
                    && r["shadow_of"].is_null()
                    && r["status"]["code"] == "OK"
                    && r.get("inputs").is_some()
                {
                    records.push(r);
                }
            })
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            let summary = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(replay(&client, &model, &against, &records, tolerance))?;
            if json {
                println!("{summary}");
            } else {
                println!(
                    "replayed {} recorded requests of {model} against version {against}: {} agree, {} differ, {} failed, {} had no recorded outputs",
                    summary["replayed"],
                    summary["agree"],
                    summary["differ"],
                    summary["failed"],
                    summary["no_outputs"]
                );
                if let Some(a) = summary["agreement"].as_f64() {
                    println!("agreement {:.2}%", a * 100.0);
                }
            }
            Ok(())
        }
    }
}

fn tensors(payload: &Value) -> Result<Vec<NamedTensor>, String> {
    let Some(map) = payload.as_object() else {
        return Ok(Vec::new());
    };
    map.iter()
        .map(|(name, t)| {
            let datatype = crate::wire::datatype(t).map_err(|e| format!("tensor '{name}': {e}"))?;
            let shape = crate::wire::shape(t);
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(t["b64"].as_str().unwrap_or_default())
                .map_err(|e| format!("tensor '{name}': {e}"))?;
            let tensor = Tensor::from_wire(datatype, shape, vec![bytes.into()])
                .map_err(|e| format!("tensor '{name}': {e}"))?;
            Ok(NamedTensor {
                name: name.clone(),
                tensor,
            })
        })
        .collect()
}

async fn replay(
    client: &Client,
    model: &str,
    version: &str,
    records: &[Value],
    tolerance: f64,
) -> Result<Value, String> {
    let (mut agree, mut differ, mut failed, mut no_outputs) = (0u64, 0u64, 0u64, 0u64);
    for record in records {
        let inputs = tensors(&record["inputs"])?;
        let answer = client
            .infer_binary(
                &format!("/v2/models/{model}/versions/{version}/infer"),
                &inputs,
            )
            .await;
        let Ok(outputs) = answer else {
            failed += 1;
            continue;
        };
        match record.get("outputs") {
            None => no_outputs += 1,
            Some(recorded) => {
                let recorded = tensors(recorded)?;
                if inferd_runtime::outputs_agree(&recorded, &outputs, tolerance, |_, _| {}) {
                    agree += 1;
                } else {
                    differ += 1;
                }
            }
        }
    }
    let compared = agree + differ;
    Ok(json!({
        "replayed": records.len(), "agree": agree, "differ": differ, "failed": failed,
        "no_outputs": no_outputs,
        "agreement": (compared > 0).then(|| agree as f64 / compared as f64),
    }))
}
