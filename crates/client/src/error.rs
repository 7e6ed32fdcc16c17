//! Errors the client reports to its caller.

use std::sync::Arc;
use std::time::Duration;

/// Why a record was not taken, or was taken and then dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record cannot fit in any frame; it was not numbered.
    #[error("record of {size} bytes does not fit in a frame (at most {max} bytes)")]
    TooLarge {
        /// The record's encoded size.
        size: usize,
        /// The most a frame can carry.
        max: usize,
    },
    /// Method, URL and rule are all empty; the agent would skip it.
    #[error("record carries no request: method, url and matched rule are all empty")]
    NoRequest,
    /// The queue was full: the record was numbered, dropped and counted.
    #[error("client queue full: record {sequence_number} dropped and counted")]
    QueueFull {
        /// The number the dropped record used up.
        sequence_number: i32,
    },
    /// The queue stayed full for the configured wait: the record was
    /// numbered, dropped and counted.
    #[error(
        "client queue stayed full for {waited:?}: record {sequence_number} dropped and counted"
    )]
    QueueTimeout {
        /// The number the dropped record used up.
        sequence_number: i32,
        /// How long it waited.
        waited: Duration,
    },
    /// The auditor is closing or closed.
    #[error("auditor is closed")]
    Closed,
    /// The session has used every sequence number (`0..=i32::MAX`).
    #[error("session has used all 2^31 sequence numbers; start a new auditor")]
    SequenceExhausted,
}

impl RecordError {
    /// The sequence number a dropped record used up, if it got one.
    pub fn sequence_number(&self) -> Option<i32> {
        match self {
            RecordError::QueueFull { sequence_number }
            | RecordError::QueueTimeout {
                sequence_number, ..
            } => Some(*sequence_number),
            _ => None,
        }
    }

    /// Whether the record was numbered and then dropped (as opposed to refused).
    pub fn is_drop(&self) -> bool {
        self.sequence_number().is_some()
    }
}

/// A configuration that cannot work, or no runtime to start in.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting is below its minimum.
    #[error("{field} must be at least {min}")]
    TooSmall {
        /// The setting.
        field: &'static str,
        /// Its minimum.
        min: u64,
    },
    /// The buffer cannot hold one batch.
    #[error("buffer_records ({buffer}) must be at least batch_max_records ({batch})")]
    BufferBelowBatch {
        /// `buffer_records`.
        buffer: usize,
        /// `batch_max_records`.
        batch: usize,
    },
    /// The redial delays are the wrong way round.
    #[error("reconnect_min ({min:?}) must not exceed reconnect_max ({max:?})")]
    ReconnectRange {
        /// `reconnect_min`.
        min: Duration,
        /// `reconnect_max`.
        max: Duration,
    },
    /// The confined process name does not fit in a frame.
    #[error("confined process name of {len} bytes is longer than {max}")]
    ProcessNameTooLong {
        /// Its length.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
    /// A policy digest that is not a lower-case hex SHA-256.
    #[error("policy digest {digest:?} is not a lower-case hex SHA-256")]
    PolicyDigest {
        /// The digest as given.
        digest: String,
    },
    /// No socket was given and the environment names none.
    #[error(
        "no agent socket: set CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH or CODER_BOUNDARY_LOG_SOCKET"
    )]
    NoSocket,
    /// [`crate::Auditor::start`] was called outside a tokio runtime.
    #[error("the async auditor must be started inside a tokio runtime")]
    NoRuntime,
    /// The blocking auditor's runtime could not be started.
    #[error("starting the client runtime")]
    Runtime(#[source] Arc<std::io::Error>),
}

/// `close()` could not produce a summary.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    /// The background task ended without a summary (its runtime shut down).
    #[error("the auditor's background task is gone")]
    WorkerGone,
}
