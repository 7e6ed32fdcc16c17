//! Starting and stopping the agent, in a fixed order, one step per function.
//!
//! Start: [`prepare`] (validate the configuration, the allowlist, the
//! socket group, the control plane settings, the data dir), [`Running::start`]
//! (open the spool, recovering what an earlier run left; start the
//! forwarder, the drop ledger's reporter and the metrics; spooled batches
//! need no manifest), get the manifest (control plane or cache),
//! [`Serving::start`] (bind the socket), [`Commands::start`] (the startup
//! script and COMMAND).
//!
//! Stop (SIGTERM, the caller's token, or COMMAND exiting), every step under
//! one deadline of `shutdown_grace`: [`Serving::stop`] (stop accepting and
//! remove the socket file; stop COMMAND (SIGTERM) if it still runs and the
//! startup script; wait for open connections to close), then
//! [`Running::finish`] (spool the last drop counts; wait for the control
//! plane to acknowledge the spool and its drop ledger). At the deadline
//! whatever is left stays spooled for the next start.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::process::Child;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warden_proto::domain::Manifest;
use warden_spool::{Spool, SpoolConfig};

use crate::commands::{self, CommandEnv};
use crate::config::AgentConfig;
use crate::control::{ControlPlane, RetryPolicy};
use crate::drops::DropReporter;
use crate::error::AgentError;
use crate::forward::{self, Forwarder};
use crate::ingest::Ingest;
use crate::manifest::{self, ManifestCache};
use crate::metrics::{self, Metrics};
use crate::socket::budget::FrameBudget;
use crate::socket::conn::ConnShared;
use crate::socket::listener::{self, SocketFile};
use crate::socket::peer::Allowlist;
use crate::socket::server::Acceptor;
use crate::{entry, files};

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
    let prepared = prepare(&config)?;
    let running = Running::start(&config, retry, prepared.control.clone(), &mut events).await?;

    let cache = ManifestCache::new(&config.data_dir);
    let obtained = manifest::obtain(
        &prepared.control,
        &cache,
        retry,
        &shutdown,
        &running.background,
    )
    .await;
    let Some((manifest, source)) = obtained else {
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

    let serving = match Serving::start(&config, prepared, &running) {
        Ok(serving) => serving,
        Err(e) => {
            running.finish(Instant::now()).await;
            return Err(e);
        }
    };
    // The ready line itself is the embedding program's to print (events).
    tracing::debug!(path = %serving.socket.path().display(), "the socket accepts connections");
    events.socket_ready(serving.socket.path());

    let mut commands = Commands::start(&config, &manifest, serving.socket.path());
    commands.wait_for_end(&shutdown).await;
    let deadline = Instant::now() + config.shutdown_grace;
    let exit_code = serving.stop(commands, deadline).await;
    let drained = running.finish(deadline).await;
    Ok(Outcome { exit_code, drained })
}

/// What is checked and built before anything starts.
struct Prepared {
    allowlist: Allowlist,
    gid: Option<u32>,
    control: ControlPlane,
}

/// Checks the configuration and prepares the data dir, before any task
/// starts: a bad setting is a usage error and never a half-started agent.
fn prepare(config: &AgentConfig) -> Result<Prepared, AgentError> {
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
    files::prepare_data_dir(&config.data_dir)?;
    Ok(Prepared {
        allowlist,
        gid,
        control,
    })
}

/// The parts that run from the spool's opening to the end.
struct Running {
    spool: Spool,
    ingest: Ingest,
    background: CancellationToken,
    tasks: TaskTracker,
}

impl Running {
    /// Binds the metrics listener, opens the spool and starts the forwarder,
    /// the drop reporter and the drop ledger's reporter.
    async fn start(
        config: &AgentConfig,
        retry: RetryPolicy,
        control: ControlPlane,
        events: &mut impl Events,
    ) -> Result<Running, AgentError> {
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                metrics::bind(addr)
                    .await
                    .map_err(|source| AgentError::MetricsBind { addr, source })?,
            ),
            None => None,
        };
        let spool_config = SpoolConfig {
            max_bytes: config.spool_max_bytes,
            full_policy: config.spool_full_policy,
            drop_summary: entry::summarize,
            commit_delay: config.spool_commit_delay,
            ..SpoolConfig::new(config.data_dir.join("spool"))
        };
        let (spool, recovery) = Spool::open(spool_config).await?;
        if recovery.entries > 0
            || recovery.truncated_bytes > 0
            || recovery.corrupt_entries > 0
            || recovery.dropped_pending > 0
        {
            tracing::info!(
                batches = recovery.entries,
                records = recovery.records,
                truncated_bytes = recovery.truncated_bytes,
                corrupt = recovery.corrupt_entries,
                dropped_unreported = recovery.dropped_pending,
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
                metrics,
                drops: drops.clone(),
                retry,
                rejected_dir: config.data_dir.join("rejected"),
                gather: config.forward_delay,
            }
            .run(background.clone()),
        );
        tasks.spawn(forward::report_drops(
            spool.clone(),
            control,
            retry,
            background.clone(),
        ));
        tasks.spawn(drops.run(spool.clone(), background.clone()));
        Ok(Running {
            spool,
            ingest,
            background,
            tasks,
        })
    }

    /// Spools the last drop counts, waits until `deadline` for the control
    /// plane to acknowledge the spool (and the drops in its ledger), then
    /// stops the background tasks. Returns whether the spool was drained.
    async fn finish(self, deadline: Instant) -> bool {
        let _ = tokio::time::timeout_at(deadline, self.ingest.drops().flush(&self.spool)).await;
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
                dropped_unreported = stats.dropped_pending,
                "stopping with batches not yet acknowledged; they stay spooled for the next start"
            );
        }
        drained
    }
}

/// The socket, bound and accepting.
struct Serving {
    socket: SocketFile,
    accepting: tokio::task::JoinHandle<()>,
    stop_accepting: CancellationToken,
    stop_connections: CancellationToken,
    connections: TaskTracker,
}

impl Serving {
    /// Binds the socket and starts accepting.
    fn start(
        config: &AgentConfig,
        prepared: Prepared,
        running: &Running,
    ) -> Result<Serving, AgentError> {
        let bound = listener::bind(&config.socket.path, prepared.gid)?;
        let stop_accepting = CancellationToken::new();
        let stop_connections = CancellationToken::new();
        let connections = TaskTracker::new();
        let acceptor = Acceptor {
            listener: bound.listener,
            allowlist: prepared.allowlist,
            max_connections: config.socket.max_connections,
            shared: Arc::new(ConnShared {
                ingest: running.ingest.clone(),
                idle_timeout: config.socket.idle_timeout,
                budget: FrameBudget::new(config.socket.frame_memory),
            }),
            connections: connections.clone(),
        };
        let accepting =
            tokio::spawn(acceptor.run(stop_accepting.clone(), stop_connections.clone()));
        Ok(Serving {
            socket: bound.file,
            accepting,
            stop_accepting,
            stop_connections,
            connections,
        })
    }

    /// Stops accepting and removes the socket file, stops the commands, and
    /// waits (until `deadline`) for open connections to close. Returns the
    /// exit code of the run.
    async fn stop(self, mut commands: Commands, deadline: Instant) -> i32 {
        self.stop_accepting.cancel();
        let _ = self.accepting.await;
        self.socket.remove();
        drop(self.socket);
        let exit_code = commands.stop(deadline).await;
        self.connections.close();
        if tokio::time::timeout_at(deadline, self.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.connections.len(),
                "closing connections still open at the end of the shutdown grace"
            );
        }
        self.stop_connections.cancel();
        self.connections.wait().await;
        exit_code
    }
}

/// The startup script and COMMAND.
struct Commands {
    script: Option<Child>,
    command: Option<Child>,
    /// Set once known: COMMAND's exit code, or why it could not start.
    exit_code: i32,
    /// COMMAND was asked for and could not be started.
    failed: bool,
}

impl Commands {
    /// Starts the startup script and COMMAND with the workspace's variables.
    fn start(config: &AgentConfig, manifest: &Manifest, socket: &Path) -> Commands {
        let env = CommandEnv::new(manifest, socket);
        let script = start_script(&manifest.startup_script, &env);
        let mut commands = Commands {
            script,
            command: None,
            exit_code: 0,
            failed: false,
        };
        if !config.command.is_empty() {
            match commands::start_command(&config.command, &env) {
                Ok(child) => commands.command = Some(child),
                Err(e) => {
                    tracing::error!(command = %config.command[0], error = %e, "cannot start COMMAND");
                    commands.exit_code = commands::spawn_failure_code(&e);
                    commands.failed = true;
                }
            }
        }
        commands
    }

    /// Runs until asked to stop, or until COMMAND exits (a COMMAND that
    /// could not start ends the run at once).
    async fn wait_for_end(&mut self, shutdown: &CancellationToken) {
        if self.failed {
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => tracing::info!("shutting down"),
            status = wait_command(&mut self.command) => {
                self.exit_code = commands::exit_code(status);
                tracing::info!(exit_code = self.exit_code, "COMMAND exited; flushing and stopping");
                self.command = None;
            }
        }
    }

    /// Stops COMMAND (if it still runs) and the startup script; returns
    /// the run's exit code.
    async fn stop(&mut self, deadline: Instant) -> i32 {
        if let Some(mut child) = self.command.take()
            && let Some(status) = commands::stop(&mut child, deadline).await
        {
            self.exit_code = commands::exit_code(status);
        }
        if let Some(child) = self.script.as_mut()
            && let Some(status) = commands::stop(child, deadline).await
        {
            tracing::debug!(
                code = commands::exit_code(status),
                "the startup script ended"
            );
        }
        self.exit_code
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
            tracing::error!(error = %e, "cannot start the startup script");
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
                tracing::error!(error = %e, "waiting for COMMAND");
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}
