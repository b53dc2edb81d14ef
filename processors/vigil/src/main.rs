//! The `vigil` command: one-shot scans in-process (`scan`, `sbom`), stage runners on NATS
//! JetStream (`run`), feeds (`feeds …`), policy bundles (`policy …`) and request
//! submission (`submit`).

mod cli;
mod deliver_cmd;
mod policy_cmd;
mod report;
mod watch_cmd;
mod wiring;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away
    // (`vigil … | head`) instead of panicking on a broken pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal at start, before any
    // thread is spawned that could race with it (the runtime is built below).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    limit_malloc_arenas();
    let args = cli::Cli::parse();
    vigil_runtime::telemetry::init(args.log_json, if args.verbose { "debug" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vigil: error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::dispatch(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vigil: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// glibc gives each thread that allocates under contention its own malloc arena, up to
/// eight per core; a scan's layer threads then hold freed memory in several arenas and
/// peak RSS grows by a third (python-app: 59–68 MiB with the default, 52–57 MiB with
/// two). Two arenas unless `MALLOC_ARENA_MAX` says otherwise.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: a malloc tuning call made before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
