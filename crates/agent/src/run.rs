//! Starting and stopping the agent, in a fixed order.
//!
//! Start: validate the configuration, open the spool (recovering what an
//! earlier run left), start the forwarder (spooled batches need no
//! manifest), get the manifest (control plane or cache), bind the socket,
//! start the startup script and COMMAND.
//!
//! Stop (SIGTERM, the caller's token, or COMMAND exiting), every step under
//! one deadline of `shutdown_grace`: stop accepting and remove the socket
//! file; stop COMMAND (SIGTERM) if it still runs and the startup script;
//! wait for open connections to close; spool the last drop counts; wait
//! for the control plane to acknowledge the spool. At the deadline whatever
//! is left stays spooled for the next start.

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use tokio::process::Child;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warden_spool::{Spool, SpoolConfig};

use crate::commands::{self, CommandEnv};
use crate::config::AgentConfig;
use crate::control::{ControlPlane, RetryPolicy};
use crate::drops::DropReporter;
use crate::error::AgentError;
use crate::forward::Forwarder;
use crate::ingest::Ingest;
use crate::manifest::{self, ManifestCache};
use crate::metrics::{self, Metrics};
use crate::socket::conn::ConnShared;
use crate::socket::listener;
use crate::socket::peer::Allowlist;
use crate::socket::server::Acceptor;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// COMMAND's exit code (128 + signal when it was killed), 0 without one.
    pub exit_code: i32,
    /// Whether the control plane had acknowledged the whole spool.
    pub drained: bool,
}

/// Hooks for the embedding program (the binary prints the ready line,
/// tests wait for it).
pub trait Events: Send {
    /// The socket accepts connections at `path`.
    fn socket_ready(&mut self, path: &Path);

    /// `/metrics` is served at `addr` (the real port when 0 was asked).
    fn metrics_ready(&mut self, addr: SocketAddr) {
        let _ = addr;
    }
}

/// No hooks.
impl Events for () {
    fn socket_ready(&mut self, _path: &Path) {}
}

impl<F: FnMut(&Path) + Send> Events for F {
    fn socket_ready(&mut self, path: &Path) {
        self(path)
    }
}

/// Runs the agent until `shutdown` fires or COMMAND exits.
pub async fn run(
    config: AgentConfig,
    retry: RetryPolicy,
    mut events: impl Events,
    shutdown: CancellationToken,
) -> Result<Outcome, AgentError> {
    config.validate()?;
    let allowlist = Allowlist::new(&config.socket.allow_exe).map_err(|(path, e)| {
        AgentError::Config(format!("allowed executable {}: {e}", path.display()))
    })?;
    let gid = config
        .socket
        .group
        .as_deref()
        .map(listener::resolve_group)
        .transpose()?;
    let control = ControlPlane::new(&config.url, &config.token, config.ca_cert.as_deref())?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            metrics::bind(addr)
                .await
                .map_err(|source| AgentError::MetricsBind { addr, source })?,
        ),
        None => None,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .map_err(|source| AgentError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;

    let spool_config = SpoolConfig {
        max_bytes: config.spool_max_bytes,
        full_policy: config.spool_full_policy,
        ..SpoolConfig::new(config.data_dir.join("spool"))
    };
    let (spool, recovery) = Spool::open(spool_config).await?;
    if recovery.entries > 0 || recovery.truncated_bytes > 0 || recovery.corrupt_entries > 0 {
        tracing::info!(
            batches = recovery.entries,
            records = recovery.records,
            truncated_bytes = recovery.truncated_bytes,
            corrupt = recovery.corrupt_entries,
            "recovered the spool; forwarding what an earlier run left"
        );
    }

    let metrics = Metrics::new();
    let drops = DropReporter::new(metrics.clone());
    let ingest = Ingest::new(spool.clone(), drops.clone(), metrics.clone());
    let background = CancellationToken::new();
    let tasks = TaskTracker::new();
    if let Some(listener) = metrics_listener {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("serving metrics at http://{addr}/metrics");
            events.metrics_ready(addr);
        }
        tasks.spawn(metrics::serve(
            listener,
            metrics.clone(),
            spool.clone(),
            background.clone(),
        ));
    }
    tasks.spawn(
        Forwarder {
            spool: spool.clone(),
            control: control.clone(),
            metrics: metrics.clone(),
            drops: drops.clone(),
            retry,
            rejected_dir: config.data_dir.join("rejected"),
        }
        .run(background.clone()),
    );
    tasks.spawn(drops.clone().run(ingest.clone(), background.clone()));

    let running = Running {
        spool,
        ingest,
        background,
        tasks,
    };
    let cache = ManifestCache::new(&config.data_dir);
    let Some((manifest, source)) =
        manifest::obtain(&control, &cache, retry, &shutdown, &running.background).await
    else {
        tracing::info!("stopped before a manifest was known");
        let drained = running.finish(Instant::now() + config.shutdown_grace).await;
        return Ok(Outcome {
            exit_code: 0,
            drained,
        });
    };
    tracing::info!(
        workspace = %manifest.workspace_name,
        owner = %manifest.owner_name,
        agent = %manifest.agent_name,
        ?source,
        "manifest known"
    );

    let bound = match listener::bind(&config.socket.path, gid) {
        Ok(bound) => bound,
        Err(e) => {
            running.finish(Instant::now()).await;
            return Err(e.into());
        }
    };
    let stop_accepting = CancellationToken::new();
    let stop_connections = CancellationToken::new();
    let connections = TaskTracker::new();
    let acceptor = Acceptor {
        listener: bound.listener,
        allowlist,
        max_connections: config.socket.max_connections,
        shared: Arc::new(ConnShared {
            ingest: running.ingest.clone(),
            idle_timeout: config.socket.idle_timeout,
        }),
        connections: connections.clone(),
    };
    let socket_file = bound.file;
    let accepting = tokio::spawn(acceptor.run(stop_accepting.clone(), stop_connections.clone()));
    // The ready line itself is the embedding program's to print (events).
    tracing::debug!(path = %socket_file.path().display(), "the socket accepts connections");
    events.socket_ready(socket_file.path());

    let env = CommandEnv::new(&manifest, socket_file.path());
    let mut script = start_script(&manifest.startup_script, &env);
    let mut command = None;
    let mut exit_code = 0;
    if !config.command.is_empty() {
        match commands::start_command(&config.command, &env) {
            Ok(child) => command = Some(child),
            Err(e) => {
                tracing::error!(command = %config.command[0], "cannot start COMMAND: {e}");
                exit_code = commands::spawn_failure_code(&e);
            }
        }
    }

    // Run until asked to stop, or until COMMAND exits (a COMMAND that
    // could not start ends the run at once).
    let command_failed = !config.command.is_empty() && command.is_none();
    if !command_failed {
        tokio::select! {
            () = shutdown.cancelled() => tracing::info!("shutting down"),
            status = wait_command(&mut command) => {
                exit_code = commands::exit_code(status);
                tracing::info!(exit_code, "COMMAND exited; flushing and stopping");
                command = None;
            }
        }
    }
    let deadline = Instant::now() + config.shutdown_grace;

    stop_accepting.cancel();
    let _ = accepting.await;
    socket_file.remove();
    if let Some(mut child) = command.take()
        && let Some(status) = commands::stop(&mut child, deadline).await
    {
        exit_code = commands::exit_code(status);
    }
    if let Some(child) = script.as_mut()
        && let Some(status) = commands::stop(child, deadline).await
    {
        tracing::debug!(
            code = commands::exit_code(status),
            "the startup script ended"
        );
    }
    connections.close();
    if tokio::time::timeout_at(deadline, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "closing connections still open at the end of the shutdown grace"
        );
    }
    stop_connections.cancel();
    connections.wait().await;
    let drained = running.finish(deadline).await;
    Ok(Outcome { exit_code, drained })
}

/// The parts that run from the spool's opening to the end.
struct Running {
    spool: Spool,
    ingest: Ingest,
    background: CancellationToken,
    tasks: TaskTracker,
}

impl Running {
    /// Spools the last drop counts, waits until `deadline` for the control
    /// plane to acknowledge the spool, then stops the background tasks.
    /// Returns whether the spool was drained.
    async fn finish(self, deadline: Instant) -> bool {
        let _ = tokio::time::timeout_at(deadline, self.ingest.drops().flush(&self.ingest)).await;
        let drained = tokio::time::timeout_at(deadline, self.spool.wait_drained())
            .await
            .is_ok();
        self.background.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        let stats = self.spool.stats();
        // Releases the spool directory's lock at once, so a new run (in
        // this process too) can open it.
        self.spool.close().await;
        if drained {
            tracing::info!("every spooled batch was acknowledged by the control plane");
        } else {
            tracing::warn!(
                batches = stats.entries,
                records = stats.records,
                "stopping with batches not yet acknowledged; they stay spooled for the next start"
            );
        }
        drained
    }
}

fn start_script(script: &str, env: &CommandEnv) -> Option<Child> {
    if script.trim().is_empty() {
        return None;
    }
    match commands::start_script(script, env) {
        Ok(child) => {
            tracing::info!(pid = child.id(), "started the startup script");
            Some(child)
        }
        Err(e) => {
            tracing::error!("cannot start the startup script: {e}");
            None
        }
    }
}

/// Waits for COMMAND; never resolves without one.
async fn wait_command(command: &mut Option<Child>) -> std::process::ExitStatus {
    match command {
        Some(child) => match child.wait().await {
            Ok(status) => status,
            Err(e) => {
                tracing::error!("waiting for COMMAND: {e}");
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}
