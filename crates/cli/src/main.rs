//! The `inferd` binary.

mod audit;
mod backends;
mod batch;
mod client;
mod keys;
mod log_buffer;
mod logging;
mod models;
mod serve;
mod single_model;
mod size;
mod wire;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "inferd",
    version,
    about = "A model server for the Open Inference Protocol (KServe V2)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the models of a model repository over HTTP/REST and gRPC.
    Serve(Box<serve::ServeArgs>),
    /// Inspect and change a running server's models: repository, aliases, traffic, rollouts.
    Models(models::ModelsArgs),
    /// The audit log: verify its hash chains, find records, replay recorded inputs.
    Audit(audit::AuditArgs),
    /// Score files of rows with a model (in this process, or against running servers).
    Batch(Box<batch::BatchArgs>),
    /// API keys in a key file (`serve --auth-keys`): create, list, revoke.
    Keys(keys::KeysArgs),
}

fn main() -> std::process::ExitCode {
    // TLS clients (S3 model sources) use ring; once, before any connection.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Models(args) => models::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Batch(args) => batch::run(*args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inferd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
