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

/// Operational logs on stderr, filtered by `WARDEN_LOG` (else `default`):
/// JSON objects when `json` (so every stderr line of a JSON-mode server is
/// JSON), plain text otherwise, coloured only on a terminal.
pub fn init_logging(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}

/// Creates `dir` (and its parents) for the owner only, if it does not exist.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data dir {}", dir.display()))
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
