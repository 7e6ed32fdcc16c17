//! One run of `warden boundary`: the policy's digest, the CA, the listener
//! (in the jail or not), the audit session, the proxy, and COMMAND with the
//! proxy variables; then the drain of the audit records.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warden_client::{Auditor, Config};

use crate::audit::Audit;
use crate::jail::{Jail, JailError};
use crate::policy::Policy;
use crate::proxy::{Proxy, ProxyConfig};
use crate::tls::{self, CertificateAuthority, TlsError};
use crate::upstream::{Connect, Resolve, SystemResolver, TcpConnector};

/// The line printed once the proxy listens (scripts wait for it).
pub const LISTENING: &str = "warden boundary proxy listening on";

/// How long the audit records may take to drain at exit.
const AUDIT_DRAIN: Duration = Duration::from_secs(5);

/// The variables COMMAND finds the proxy with.
pub const PROXY_VARS: [&str; 4] = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"];
/// The variables COMMAND finds the interception CA bundle with.
pub const CA_VARS: [&str; 5] = [
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];

/// Everything a run needs.
#[derive(Debug)]
pub struct RunConfig {
    /// The rules.
    pub policy: Policy,
    /// Where to listen (loopback).
    pub listen: SocketAddr,
    /// Intercept CONNECT tunnels.
    pub tls_intercept: bool,
    /// Keep the CA here instead of in memory.
    pub ca_dir: Option<PathBuf>,
    /// More roots to verify origins against.
    pub upstream_ca: Vec<PathBuf>,
    /// Run COMMAND in a network namespace whose only way out is the proxy.
    pub jail: bool,
    /// The agent's boundary log socket; `None`: records are not forwarded.
    pub log_socket: Option<PathBuf>,
    /// COMMAND and its arguments (empty: run until shutdown).
    pub command: Vec<OsString>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad configuration (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The jail cannot be built (exit 2: never run unconfined).
    #[error(transparent)]
    Jail(#[from] JailError),
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The listener cannot be bound.
    #[error("listening on {address}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// COMMAND cannot be started.
    #[error("starting {command}")]
    Command {
        /// COMMAND.
        command: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl RunError {
    /// The exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Usage(_) | RunError::Jail(_) => 2,
            _ => 1,
        }
    }
}

/// Name resolution and connections to origins (tests swap them).
pub struct Network {
    /// Resolver.
    pub resolver: Arc<dyn Resolve>,
    /// Connector.
    pub connector: Arc<dyn Connect>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            resolver: Arc::new(SystemResolver),
            connector: Arc::new(TcpConnector),
        }
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").finish_non_exhaustive()
    }
}

/// Runs the proxy (and COMMAND), returning the exit code: COMMAND's (128 +
/// the signal when it was killed), or 0 after `shutdown` without COMMAND.
/// Cancelling `shutdown` while COMMAND runs sends it SIGTERM.
pub async fn run(
    config: RunConfig,
    network: Network,
    shutdown: CancellationToken,
) -> Result<u8, RunError> {
    if config.jail && config.command.is_empty() {
        return Err(RunError::Usage(
            "--jail needs a COMMAND to run inside the jail".into(),
        ));
    }
    // Same-uid processes (COMMAND among them) may neither read this
    // process's memory (the CA key) nor ptrace it to change its decisions.
    if let Err(error) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!(%error, "cannot make the proxy non-dumpable");
    }
    let policy = Arc::new(config.policy);
    let rules = policy.deny_rules().len() + policy.allow_rules().len();
    eprintln!(
        "warden boundary policy digest {} ({rules} rules)",
        policy.digest()
    );
    for key in policy.ignored_config_keys() {
        tracing::warn!(
            key,
            "config file key ignored (warden boundary reads allowlist and denylist)"
        );
    }
    if policy.restricts_requests() && !config.tls_intercept {
        tracing::warn!(
            "rules with method= or path= cannot look inside HTTPS tunnels without --tls-intercept: \
             such an allow rule admits the whole tunnel to its host, such a deny rule refuses it"
        );
    }

    let ca = if config.tls_intercept {
        Some(Arc::new(match &config.ca_dir {
            Some(dir) => CertificateAuthority::load_or_create(dir)?,
            None => CertificateAuthority::generate()?,
        }))
    } else {
        None
    };
    let bundle = match &ca {
        Some(ca) => Some(tls::write_bundle(ca)?),
        None => None,
    };
    let roots = Arc::new(tls::upstream_roots(&config.upstream_ca)?);

    let (listener, jail) = if config.jail {
        let hidden: Vec<PathBuf> = config.ca_dir.iter().cloned().collect();
        let (listener, jail) = Jail::create(config.listen, &hidden)?;
        (listener, Some(jail))
    } else {
        let listener =
            std::net::TcpListener::bind(config.listen).map_err(|source| RunError::Listen {
                address: config.listen,
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| RunError::Listen {
                address: config.listen,
                source,
            })?;
        (listener, None)
    };
    let address = listener.local_addr().map_err(|source| RunError::Listen {
        address: config.listen,
        source,
    })?;
    let listener =
        TcpListener::from_std(listener).map_err(|source| RunError::Listen { address, source })?;

    let auditor = match &config.log_socket {
        Some(path) => {
            let mut client = Config::new(path);
            client.policy = Some(warden_client::Policy {
                digest: policy.digest(),
                text: policy.text(),
            });
            client.confined_process_name = process_name(&config.command);
            // The proxy decides thousands of requests a second at peak:
            // bigger batches than the reference's 10, still sent quickly.
            client.batch_max_records = 256;
            client.batch_interval = Duration::from_millis(500);
            client.queue_capacity = 16 * 1024;
            client.buffer_records = 64 * 1024;
            match Auditor::start(client) {
                Ok(auditor) => Some(auditor),
                Err(error) => return Err(RunError::Usage(format!("audit client: {error}"))),
            }
        }
        None => {
            eprintln!(
                "warden boundary: no agent socket (--log-proxy-socket-path, \
                 CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH or CODER_BOUNDARY_LOG_SOCKET); \
                 decisions are logged here but not forwarded as records"
            );
            None
        }
    };
    let audit = Arc::new(Audit::new(auditor.clone()));
    let proxy = Proxy::new(
        ProxyConfig {
            policy: policy.clone(),
            audit: audit.clone(),
            ca,
            upstream_roots: roots,
            resolver: network.resolver,
            connector: network.connector,
        },
        (!config.jail).then_some(address),
    )?;
    let stop_proxy = CancellationToken::new();
    let serving = tokio::spawn(proxy.serve(listener, stop_proxy.clone()));
    eprintln!("{LISTENING} http://{address}");

    let code = if config.command.is_empty() {
        shutdown.cancelled().await;
        0
    } else {
        let proxy_url = format!("http://{address}");
        let mut command = tokio::process::Command::new(&config.command[0]);
        command.args(&config.command[1..]);
        for var in PROXY_VARS {
            command.env(var, &proxy_url);
        }
        command.env_remove("NO_PROXY").env_remove("no_proxy");
        if let Some((_, path)) = &bundle {
            for var in CA_VARS {
                command.env(var, path);
            }
        }
        let name = config.command[0].to_string_lossy().into_owned();
        let started = match jail {
            Some(jail) => jail.spawn(command).map_err(RunError::Jail),
            None => command.spawn().map_err(|source| RunError::Command {
                command: name.clone(),
                source,
            }),
        };
        let mut child = match started {
            Ok(child) => child,
            Err(error) => {
                stop_proxy.cancel();
                let _ = serving.await;
                close_audit(auditor, &audit).await;
                return Err(error);
            }
        };
        let status = tokio::select! {
            status = child.wait() => status,
            () = shutdown.cancelled() => {
                if let Some(pid) = child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
                child.wait().await
            }
        };
        match status {
            Ok(status) => exit_code(status),
            Err(error) => {
                tracing::error!(%error, command = name, "waiting for COMMAND");
                1
            }
        }
    };
    stop_proxy.cancel();
    let _ = serving.await;
    close_audit(auditor, &audit).await;
    drop(bundle);
    Ok(code)
}

/// Drains the records and says how it went.
async fn close_audit(auditor: Option<Auditor>, audit: &Audit) {
    let counts = audit.counts();
    let Some(auditor) = auditor else {
        eprintln!(
            "warden boundary: {} decisions (not forwarded)",
            counts.decisions
        );
        return;
    };
    match auditor.close_within(AUDIT_DRAIN).await {
        Ok(summary) => eprintln!(
            "warden boundary: {} decisions; audit records: {summary}",
            counts.decisions
        ),
        Err(error) => eprintln!("warden boundary: audit records: {error}"),
    }
}

/// The base name of COMMAND, sent as the confined process name.
fn process_name(command: &[OsString]) -> String {
    command
        .first()
        .map(|c| {
            std::path::Path::new(c)
                .file_name()
                .unwrap_or(c)
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_default()
        .chars()
        .take(warden_client::MAX_PROCESS_NAME_LEN / 4)
        .collect()
}

/// The exit code a shell would report: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => (128 + signal) as u8,
        (None, None) => 1,
    }
}
