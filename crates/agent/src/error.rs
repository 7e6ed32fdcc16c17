//! The errors that stop the agent, and which of them are the operator's to
//! fix (usage or configuration, exit 2) rather than runtime failures (exit 1).
//!
//! The rule, as everywhere in Warden: a message says what was being done;
//! its cause is the `#[source]`, never repeated in the message. Whoever
//! prints an error prints the whole chain, once ([`crate::chain`]).

use std::net::SocketAddr;

use crate::control::ControlError;
use crate::files::DataDirError;
use crate::socket::listener::BindError;

/// Why the agent could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A setting is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data dir cannot be used.
    #[error("preparing the data dir")]
    DataDir(#[from] DataDirError),
    /// The control plane cannot be configured.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The socket cannot be bound.
    #[error(transparent)]
    Socket(#[from] BindError),
    /// The spool cannot be opened.
    #[error("opening the spool")]
    Spool(#[from] warden_spool::SpoolError),
    /// The metrics listener cannot be bound.
    #[error("binding the metrics listener on {addr}")]
    MetricsBind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
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
            AgentError::DataDir(e) => e.is_usage(),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        if self.is_usage() { 2 } else { 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_failure_keeps_its_cause_once() {
        let io = std::io::Error::from_raw_os_error(28); // ENOSPC
        let spool = warden_spool::SpoolError::Io {
            op: "fsync segment",
            path: "/data/spool/00000000000000000001.seg".into(),
            source: std::sync::Arc::new(io),
        };
        let text = crate::chain::display(&AgentError::from(spool));
        assert!(
            text.starts_with("opening the spool: spool i/o failed: fsync segment /data/spool/"),
            "{text}"
        );
        assert!(text.contains("No space left on device"), "{text}");
        assert_eq!(text.matches("No space left").count(), 1, "{text}");
    }
}
