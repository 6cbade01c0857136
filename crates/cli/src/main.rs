//! The `inferd` binary.

mod log_buffer;
mod logging;
mod serve;
mod size;

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
    /// Serve the models of a model repository over HTTP/REST.
    Serve(serve::ServeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inferd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
