//! The `vigil` command: one-shot scans in-process (`scan`, `sbom`), stage runners on NATS
//! JetStream (`run`), feeds (`feeds …`), policy bundles (`policy …`) and request
//! submission (`submit`).

mod cli;
mod policy_cmd;
mod report;
mod wiring;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away
    // (`vigil … | head`) instead of panicking on a broken pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal at start, before any
    // thread is spawned that could race with it.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
