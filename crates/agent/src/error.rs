//! The errors that stop the agent, and which of them are the operator's to
//! fix (usage or configuration, exit 2) rather than runtime failures (exit 1).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::control::ControlError;
use crate::socket::listener::BindError;

/// Why the agent could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("preparing the data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Socket(#[from] BindError),
    #[error("opening the spool: {0}")]
    Spool(#[from] warden_spool::SpoolError),
    #[error("binding the metrics listener on {addr}: {source}")]
    MetricsBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl AgentError {
    /// Whether the operator must change the configuration (exit 2) rather
    /// than retry (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            AgentError::Config(_) => true,
            AgentError::Control(e) => e.is_usage(),
            AgentError::Socket(e) => e.is_usage(),
            AgentError::MetricsBind { .. } => true,
            // Another agent holds the spool: the same mistake as a live socket.
            AgentError::Spool(e) => matches!(e, warden_spool::SpoolError::Locked { .. }),
            AgentError::DataDir { .. } => false,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        if self.is_usage() { 2 } else { 1 }
    }
}
