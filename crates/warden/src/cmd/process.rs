//! Process plumbing shared by the subcommands: shutdown signals, operational
//! logging, the data dir.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use warden_api::client::SERVER_URL_FILE;

/// Calls `on_signal` with the signal's name on the first SIGTERM or SIGINT.
/// The handlers are installed before this returns, so a signal that arrives
/// right after is not missed.
pub fn on_shutdown_signal(
    on_signal: impl FnOnce(&'static str) + Send + 'static,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        on_signal(name);
    });
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or SIGINT, with a log line.
pub fn forward_signals(shutdown: CancellationToken) -> anyhow::Result<()> {
    on_shutdown_signal(move |name| {
        tracing::info!("{name} received; shutting down");
        shutdown.cancel();
    })
}

/// The tracing target of lines scripts wait for (`warden server listening
/// on ...`): logged at info, and shown whatever `WARDEN_LOG` says.
pub const ANNOUNCE: &str = "warden::announce";

/// Operational logs on stderr, filtered by `WARDEN_LOG` (else `default`):
/// JSON objects when `json` (so every stderr line of a JSON-mode server is
/// JSON), plain text otherwise, coloured only on a terminal.
pub fn init_logging(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
        // Announcements scripts wait for print whatever the level.
        .add_directive(
            format!("{ANNOUNCE}=info")
                .parse()
                .expect("a valid directive"),
        );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        // The boundary lines' keys (ts, level, msg): one schema on stderr.
        builder.event_format(super::json_log::JsonLines).try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}

/// Makes every file this process creates from now on its user's alone
/// (umask 077), whatever umask it was started with: files a library creates
/// (SQLite's journal and temporary files) included. The files the server
/// writes itself are created 0600 regardless (`warden_server::files`).
pub fn private_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Raises the soft limit on open files to the hard limit (as Go programs do
/// at start), so that a connection limit above the usual default of 1024 can
/// be reached; returns the soft limit in force.
pub fn raise_open_files_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), hard) = (limit.current, limit.maximum)
        && hard.is_none_or(|hard| hard > current)
    {
        // An unlimited hard limit is not a valid soft one on Linux: cap it.
        let wanted = hard.unwrap_or(1 << 20).min(1 << 20).max(current);
        let raised = rustix::process::Rlimit {
            current: Some(wanted),
            maximum: hard,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return wanted;
        }
    }
    limit.current.unwrap_or(u64::MAX)
}

/// Writes the server's URL to `<data-dir>/server-url` (atomically: a
/// reader sees the old URL or the new one), where `warden logs` and `warden
/// workspace` find it; returns the file, for the caller to remove on stop
/// (a stale URL would send the CLI to a server that is gone).
pub fn write_server_url(data_dir: &Path, url: &str) -> anyhow::Result<PathBuf> {
    let path = data_dir.join(SERVER_URL_FILE);
    warden_fsutil::write_atomically(&path, format!("{url}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
