//! What `run` needs to know, validated before any I/O.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use warden_proto::api::MAX_RECORDS_PER_CALL;
use warden_store::DatabaseUrl;

use crate::ServerError;
use crate::export::ExportSettings;
use crate::line::LineFormat;
use crate::retention::Retention;

/// The control plane's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where records and the registry live.
    pub database: DatabaseUrl,
    /// The form of the boundary lines on stderr.
    pub log_format: LineFormat,
    /// Serve TLS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Allow plain HTTP on a non-loopback address.
    pub insecure_listen: bool,
    /// Where the admin token comes from.
    pub admin_token: AdminTokenSource,
    /// Limits on what one call may carry.
    pub limits: Limits,
    /// Limits on connections: how many, and how long they may idle.
    pub connections: ConnectionLimits,
    /// The most bytes one record page of the HTTP API holds (at least one
    /// record is always sent); the page ends early with a `next` cursor.
    pub max_response_bytes: usize,
    /// How long a graceful shutdown waits for open calls before cutting them.
    pub shutdown_grace: Duration,
    /// Delete records received longer ago than this (`None`: keep all).
    pub retention: Option<Retention>,
    /// The checkpoint signing key's file (PKCS#8), and whether to generate
    /// it there when missing. `None`: a key generated for this run only
    /// (tests and embedders; its checkpoints cannot be trusted later).
    pub signing_key: Option<(PathBuf, bool)>,
    /// How long a session without a reported end must be idle before its
    /// completeness verdict is signed (see [`crate::completeness`]).
    pub session_idle: Duration,
    /// Export sinks (none by default).
    pub exports: ExportSettings,
    /// The key `signing_key` replaces: it introduces the new key at start
    /// (see [`crate::rotation`]).
    pub previous_signing_key: Option<PathBuf>,
}

impl Config {
    /// A configuration with defaults for everything but the database and the
    /// admin token.
    pub fn new(database: DatabaseUrl, admin_token: AdminTokenSource) -> Config {
        Config {
            database,
            log_format: LineFormat::Text,
            tls: None,
            insecure_listen: false,
            admin_token,
            limits: Limits::default(),
            connections: ConnectionLimits::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            shutdown_grace: Duration::from_secs(30),
            retention: None,
            signing_key: None,
            session_idle: crate::completeness::DEFAULT_IDLE,
            exports: ExportSettings::default(),
            previous_signing_key: None,
        }
    }
}

/// PEM files for TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The certificate's private key.
    pub key: PathBuf,
}

/// Where the admin token comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum AdminTokenSource {
    /// Given (`WARDEN_ADMIN_TOKEN`): its hash replaces any stored one.
    Given(String),
    /// `<dir>/admin-token`: read when it exists (and made the stored one),
    /// otherwise generated and written there (mode 0600) unless the store
    /// already has a token, which another replica created.
    DataDir(PathBuf),
}

impl std::fmt::Debug for AdminTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminTokenSource::Given(_) => f.write_str("Given(..)"),
            AdminTokenSource::DataDir(dir) => f.debug_tuple("DataDir").field(dir).finish(),
        }
    }
}

/// Shortest admin token accepted from the environment.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Limits on agent calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Records (valid or not) in one ReportBoundaryLogs call.
    pub max_records_per_call: usize,
    /// Encoded size of one gRPC message.
    pub max_message_bytes: usize,
    /// A longer URL is stored cut to this many bytes, with its length
    /// (`--max-url-bytes`).
    pub max_url_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_records_per_call: MAX_RECORDS_PER_CALL,
            max_message_bytes: warden_proto::api::MAX_MESSAGE_BYTES,
            max_url_bytes: warden_store::DEFAULT_MAX_URL_BYTES,
        }
    }
}

/// The default of [`Config::max_response_bytes`]: 4 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Limits on the server's connections (see [`crate::connections`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, in all.
    pub max_connections: usize,
    /// Of those, how many only connections that presented a valid agent or
    /// admin token may use: unauthenticated connections get at most
    /// `max_connections - reserved`.
    pub reserved: usize,
    /// A connection that has not authenticated is closed this long after it
    /// opened or its last request began or ended.
    pub unauthenticated_timeout: Duration,
    /// An authenticated connection is closed after this long without a
    /// request in flight.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            reserved: 1024,
            unauthenticated_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl ConnectionLimits {
    /// Connections that have not authenticated get at most this many.
    pub fn max_unauthenticated(&self) -> usize {
        self.max_connections - self.reserved
    }

    /// Whether the limits can work: room for unauthenticated connections
    /// (every connection starts as one) and timeouts above zero.
    pub fn check(&self) -> Result<(), ServerError> {
        if self.reserved >= self.max_connections {
            return Err(ServerError::Config(format!(
                "the connections reserved for authenticated clients ({}) must be fewer than the maximum ({}): every connection starts unauthenticated",
                self.reserved, self.max_connections
            )));
        }
        if self.unauthenticated_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Err(ServerError::Config(
                "connection timeouts must be above zero".into(),
            ));
        }
        Ok(())
    }
}

/// Refuses plain HTTP on a non-loopback address unless allowed: agent tokens
/// would cross the network in clear. An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`) counts as the IPv4 address it maps.
pub fn check_listen(addr: SocketAddr, tls: bool, insecure_listen: bool) -> Result<(), ServerError> {
    if tls || insecure_listen || addr.ip().to_canonical().is_loopback() {
        return Ok(());
    }
    Err(ServerError::Config(format!(
        "refusing to serve plain HTTP on {addr}, which is not a loopback address: agent tokens would cross the network in clear; give --tls-cert and --tls-key, or --insecure-listen"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_only() {
        let local: SocketAddr = "127.0.0.1:7080".parse().unwrap();
        let local6: SocketAddr = "[::1]:7080".parse().unwrap();
        let public: SocketAddr = "0.0.0.0:7080".parse().unwrap();
        assert!(check_listen(local, false, false).is_ok());
        assert!(check_listen(local6, false, false).is_ok());
        assert!(matches!(
            check_listen(public, false, false),
            Err(ServerError::Config(_))
        ));
        assert!(check_listen(public, true, false).is_ok());
        assert!(check_listen(public, false, true).is_ok());
        // Every other form of "not loopback", IPv4-mapped ones included.
        for addr in [
            "[::]:7080",
            "[::ffff:10.0.0.1]:7080",
            "[::ffff:0.0.0.0]:7080",
            "[::ffff:192.168.1.1]:7080",
            "[fe80::1]:7080",
            "10.0.0.1:7080",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert!(
                matches!(
                    check_listen(addr, false, false),
                    Err(ServerError::Config(_))
                ),
                "{addr}"
            );
            assert!(check_listen(addr, true, false).is_ok(), "{addr}");
        }
        // A mapped loopback address is loopback.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:7080".parse().unwrap();
        assert!(check_listen(mapped, false, false).is_ok());
    }

    #[test]
    fn connection_limits_need_room_for_new_connections() {
        assert!(ConnectionLimits::default().check().is_ok());
        let limits = ConnectionLimits {
            max_connections: 10,
            reserved: 10,
            ..ConnectionLimits::default()
        };
        assert!(matches!(limits.check(), Err(ServerError::Config(_))));
        let limits = ConnectionLimits {
            unauthenticated_timeout: Duration::ZERO,
            ..ConnectionLimits::default()
        };
        assert!(limits.check().is_err());
        assert_eq!(ConnectionLimits::default().max_unauthenticated(), 3072);
    }

    #[test]
    fn given_tokens_are_not_printed() {
        let source = AdminTokenSource::Given("s3cret-s3cret-s3cret".into());
        assert!(!format!("{source:?}").contains("s3cret"));
    }
}
