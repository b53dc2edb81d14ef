//! The `vigil` command: one-shot scans in-process (`scan`), stage runners on NATS
//! JetStream (`run`), feed sync (`feeds sync`) and request submission (`submit`).

mod cli;
mod policy_cmd;
mod report;
mod wiring;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    vigil_runtime::telemetry::init(args.log_json, if args.verbose { "debug" } else { "warn" });
    match cli::dispatch(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vigil: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
