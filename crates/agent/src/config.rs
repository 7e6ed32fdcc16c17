//! The agent's configuration: typed, documented per field and validated
//! before any I/O, so a bad flag is a usage error (exit 2) and never a
//! half-started agent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use warden_spool::FullPolicy;

use crate::error::AgentError;
use crate::socket::budget::DEFAULT_FRAME_MEMORY;
pub use crate::token::Token;

/// Default cap on concurrently connected socket clients.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default time a connection may stay silent before the agent closes it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default time allowed for flushing on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default bound of the on-disk spool.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Default of [`AgentConfig::spool_commit_delay`].
/// As long as [`DEFAULT_FORWARD_DELAY`]: the forward delay counts from when
/// a batch was read, so the commit's wait is spent inside it rather than
/// added to a record's way to the control plane, and with the two equal a
/// spool group is ready to go when it is readable: one call per group, the
/// fewest calls for that latency (`docs/benchmarks.md`).
pub const DEFAULT_SPOOL_COMMIT_DELAY: Duration = Duration::from_millis(8);
/// Default of [`AgentConfig::forward_delay`].
pub const DEFAULT_FORWARD_DELAY: Duration = Duration::from_millis(8);
/// Most [`AgentConfig::spool_commit_delay`] and
/// [`AgentConfig::forward_delay`] may be: each adds to every record's latency.
pub const MAX_GATHER_DELAY: Duration = Duration::from_secs(1);

/// Everything `warden agent` needs to run.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Control plane URL, `http://` or `https://`.
    pub url: String,
    /// The agent's token (`authorization: Bearer <token>` on every call).
    pub token: Token,
    /// Holds the spool (`spool/`) and the cached manifest.
    pub data_dir: PathBuf,
    /// The boundary log socket.
    pub socket: SocketConfig,
    /// Bound of the on-disk spool, in bytes.
    pub spool_max_bytes: u64,
    /// What a full spool does: stop reading clients (default) or drop the
    /// oldest spooled batches.
    pub spool_full_policy: FullPolicy,
    /// How long a small spool append may wait for the appends of other
    /// connections to share its write and fsync (clients are answered only
    /// after the fsync): fewer fsyncs at a low rate, for at most this much
    /// more latency. Zero: none.
    pub spool_commit_delay: Duration,
    /// How long a batch may wait for others to share a call to the control
    /// plane when no call is in flight (a full call goes at once), counted
    /// from when the agent read it: the spool commit's own wait and fsync
    /// are part of it, not added to it. Fewer, larger calls and commits at a
    /// low rate. Zero: a call goes at once.
    pub forward_delay: Duration,
    /// Where to serve Prometheus `/metrics`; off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// PEM CA certificate to trust for an `https://` URL (instead of the
    /// system roots).
    pub ca_cert: Option<PathBuf>,
    /// Time allowed on shutdown for connections to close and the spool to
    /// be acknowledged; what is left stays spooled for the next start.
    pub shutdown_grace: Duration,
    /// COMMAND and its arguments; empty for none.
    pub command: Vec<String>,
}

/// The boundary log socket's settings.
#[derive(Clone, Debug)]
pub struct SocketConfig {
    /// Path of the Unix socket.
    pub path: PathBuf,
    /// Group (name or numeric gid) allowed to connect besides the owner:
    /// the socket becomes mode 0660 owned by that group. `None`: mode 0600.
    pub group: Option<String>,
    /// Executables allowed to connect; empty allows every peer.
    pub allow_exe: Vec<PathBuf>,
    /// Connections beyond this many are refused (and counted).
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Memory all connections together may hold in large (tag-0) frames
    /// being read or waiting for the spool; beyond it, connections wait.
    pub frame_memory: u64,
}

impl SocketConfig {
    /// Defaults for everything but the path.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SocketConfig {
            path: path.into(),
            group: None,
            allow_exe: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            frame_memory: DEFAULT_FRAME_MEMORY,
        }
    }
}

impl AgentConfig {
    /// Defaults for everything but the required settings.
    pub fn new(
        url: impl Into<String>,
        token: Token,
        data_dir: impl Into<PathBuf>,
        socket_path: impl Into<PathBuf>,
    ) -> Self {
        AgentConfig {
            url: url.into(),
            token,
            data_dir: data_dir.into(),
            socket: SocketConfig::new(socket_path),
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            spool_full_policy: FullPolicy::Backpressure,
            spool_commit_delay: DEFAULT_SPOOL_COMMIT_DELAY,
            forward_delay: DEFAULT_FORWARD_DELAY,
            metrics_listen: None,
            ca_cert: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            command: Vec::new(),
        }
    }

    /// Checks what can be checked without touching the system.
    pub fn validate(&self) -> Result<(), AgentError> {
        let bad = |msg: String| Err(AgentError::Config(msg));
        let scheme = self
            .url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("http") if self.ca_cert.is_some() => {
                return bad(format!(
                    "--ca-cert is only used with an https:// url, got {}",
                    self.url
                ));
            }
            Some("http" | "https") => {}
            _ => return bad(format!("url {:?} is not http:// or https://", self.url)),
        }
        if self.token.expose().trim().is_empty() {
            return bad("the agent token is empty".into());
        }
        if self
            .token
            .expose()
            .bytes()
            .any(|b| !(0x21..=0x7e).contains(&b))
        {
            return bad("the agent token holds whitespace or non-ascii characters".into());
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("the data dir is empty".into());
        }
        if self.socket.path.as_os_str().is_empty() {
            return bad("the socket path is empty".into());
        }
        if self.socket.max_connections == 0 {
            return bad("the connection limit must be at least 1".into());
        }
        if self.socket.idle_timeout.is_zero() {
            return bad("the idle timeout must be positive".into());
        }
        if self.socket.frame_memory < warden_proto::codec::MAX_LEGACY_PAYLOAD as u64 {
            return bad(format!(
                "the frame memory {} is below one largest frame ({} bytes)",
                self.socket.frame_memory,
                warden_proto::codec::MAX_LEGACY_PAYLOAD
            ));
        }
        if self.spool_max_bytes < MIN_SPOOL_BYTES {
            return bad(format!(
                "the spool bound {} is below the minimum of {MIN_SPOOL_BYTES} bytes",
                self.spool_max_bytes
            ));
        }
        for (name, delay) in [
            ("spool commit delay", self.spool_commit_delay),
            ("forward delay", self.forward_delay),
        ] {
            if delay > MAX_GATHER_DELAY {
                return bad(format!(
                    "the {name} {delay:?} is above the maximum of {MAX_GATHER_DELAY:?}"
                ));
            }
        }
        if matches!(self.command.first(), Some(program) if program.is_empty()) {
            return bad("COMMAND is empty".into());
        }
        Ok(())
    }
}

/// The smallest spool that still holds a frame split at its largest (a
/// 1 MiB tag-0 frame) several times over.
pub const MIN_SPOOL_BYTES: u64 = 4 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AgentConfig {
        AgentConfig::new(
            "http://127.0.0.1:7080",
            Token::new("secret-token"),
            "/tmp/d",
            "/tmp/s.sock",
        )
    }

    #[test]
    fn defaults_validate() {
        config().validate().unwrap();
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let text = format!("{:?}", config());
        assert!(!text.contains("secret-token"), "{text}");
        assert!(text.contains("redacted"));
    }

    type Change = Box<dyn Fn(&mut AgentConfig)>;

    #[test]
    fn bad_settings_are_config_errors() {
        let cases: Vec<(&str, Change)> = vec![
            ("not http", Box::new(|c| c.url = "ftp://x".into())),
            ("no scheme", Box::new(|c| c.url = "127.0.0.1:7080".into())),
            (
                "ca on http",
                Box::new(|c| c.ca_cert = Some("/ca.pem".into())),
            ),
            ("empty token", Box::new(|c| c.token = Token::new(" "))),
            (
                "token with space",
                Box::new(|c| c.token = Token::new("a b")),
            ),
            (
                "zero connections",
                Box::new(|c| c.socket.max_connections = 0),
            ),
            (
                "zero idle",
                Box::new(|c| c.socket.idle_timeout = Duration::ZERO),
            ),
            (
                "tiny frame memory",
                Box::new(|c| c.socket.frame_memory = 1024),
            ),
            ("tiny spool", Box::new(|c| c.spool_max_bytes = 1024)),
            (
                "long commit delay",
                Box::new(|c| c.spool_commit_delay = Duration::from_secs(2)),
            ),
            (
                "long forward delay",
                Box::new(|c| c.forward_delay = Duration::from_secs(2)),
            ),
            (
                "empty command",
                Box::new(|c| c.command = vec![String::new()]),
            ),
        ];
        for (name, change) in cases {
            let mut c = config();
            change(&mut c);
            let err = c.validate().expect_err(name);
            assert!(err.is_usage(), "{name}: {err}");
        }
        let mut https = config();
        https.url = "https://cp.example:443".into();
        https.ca_cert = Some("/ca.pem".into());
        https.validate().unwrap();
    }
}
