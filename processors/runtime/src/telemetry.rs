//! `tracing` setup: human-readable or JSON lines on stderr, filtered by `VIGIL_LOG`
//! (or `RUST_LOG`), default `info` for vigil crates and `warn` for the rest. Colours
//! only when stderr is a terminal (and `NO_COLOR` is unset): a log written to a file, a
//! pipe or a collector is plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Whether log lines on stderr get ANSI colours.
pub fn colour_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

pub fn init(json: bool, default_level: &str) {
    let filter = std::env::var("VIGIL_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .map(EnvFilter::new)
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,vigil={default_level},vigil_runtime={default_level},vigil_fetch={default_level},vigil_extract={default_level},vigil_analyze={default_level},vigil_match={default_level},vigil_evaluate={default_level},vigil_notify={default_level},vigil_feeds={default_level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_stderr());
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
