//! `inferd keys create|list|revoke --file KEYS`: the API key file the server reads with
//! `--auth-keys`. It stores each key's SHA-256; the secret is printed once, when created.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use clap::{Args, Subcommand};
use inferd_server::auth::keys::{KEY_PREFIX, KeyFileText, KeyText, secret_sha256, valid_id};
use inferd_server::auth::{KeyFile, Scopes};

#[derive(Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a key; prints its secret alone on the last line of stdout (shown only this once).
    Create {
        #[arg(long)]
        file: PathBuf,
        /// Key id: the principal on logs and audit records (A-Z a-z 0-9 - _).
        #[arg(long)]
        id: String,
        /// Comma-separated scopes, e.g. inference:iris*,metadata
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Expiry, RFC 3339 (2027-01-01T00:00:00Z).
        #[arg(long)]
        expires: Option<String>,
        /// Requests per second allowed (token bucket).
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, requires = "rate")]
        burst: Option<f64>,
    },
    /// The keys of a file: id, scopes, expiry (never secrets; the file has none).
    List {
        #[arg(long)]
        file: PathBuf,
    },
    /// Remove a key; a server with `--auth-keys` refuses it within seconds.
    Revoke {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        id: String,
    },
}

fn load(path: &Path) -> Result<KeyFileText, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyFileText::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes beside and renames, so a server never reads half a file; readable by the owner only.
fn store(path: &Path, file: &KeyFileText) -> Result<(), String> {
    let text = toml::to_string(file).map_err(|e| e.to_string())?;
    KeyFile::parse(&text)
        .map_err(|e| format!("refusing to write a key file the server cannot read: {e}"))?;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

pub fn run(args: KeysArgs) -> Result<(), String> {
    match args.command {
        KeysCommand::Create {
            file,
            id,
            scopes,
            expires,
            rate,
            burst,
        } => {
            if !valid_id(&id) {
                return Err(format!("key id '{id}': use 1-64 of A-Z a-z 0-9 - _"));
            }
            let parsed = Scopes::parse(scopes.iter().map(String::as_str))?;
            if parsed == Scopes::default() {
                return Err("--scopes: give at least one scope".to_string());
            }
            if let Some(t) = &expires
                && inferd_runtime::parse_rfc3339(t).is_none()
            {
                return Err(format!("--expires '{t}' is not an RFC 3339 time"));
            }
            let mut keys = load(&file)?;
            if keys.keys.iter().any(|k| k.id == id) {
                return Err(format!("{} already has a key '{id}'", file.display()));
            }
            let mut random = [0u8; 32];
            getrandom::fill(&mut random).map_err(|e| format!("no randomness: {e}"))?;
            let secret = format!(
                "{KEY_PREFIX}{id}.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
            );
            keys.keys.push(KeyText {
                id: id.clone(),
                sha256: secret_sha256(&secret),
                scopes: parsed.to_strings(),
                expires,
                rate,
                burst,
            });
            store(&file, &keys)?;
            eprintln!(
                "key '{id}' added to {}; its secret (shown once):",
                file.display()
            );
            println!("{secret}");
            Ok(())
        }
        KeysCommand::List { file } => {
            let keys = load(&file)?;
            println!("{:<24} {:<28} {:<10} SCOPES", "ID", "EXPIRES", "RATE");
            for k in &keys.keys {
                println!(
                    "{:<24} {:<28} {:<10} {}",
                    k.id,
                    k.expires.as_deref().unwrap_or("never"),
                    k.rate
                        .map(|r| format!("{r}/s"))
                        .unwrap_or_else(|| "-".into()),
                    k.scopes.join(",")
                );
            }
            for s in &keys.subjects {
                println!(
                    "{:<24} {:<28} {:<10} {}",
                    s.id.as_deref().unwrap_or(&s.subject),
                    format!("subject {}", s.subject),
                    s.rate
                        .map(|r| format!("{r}/s"))
                        .unwrap_or_else(|| "-".into()),
                    s.scopes.join(",")
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { file, id } => {
            let mut keys = load(&file)?;
            let before = keys.keys.len();
            keys.keys.retain(|k| k.id != id);
            if keys.keys.len() == before {
                return Err(format!("{} has no key '{id}'", file.display()));
            }
            store(&file, &keys)?;
            eprintln!("key '{id}' removed from {}", file.display());
            Ok(())
        }
    }
}
