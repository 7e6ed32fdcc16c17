//! What an auditor did with its records, returned by `close()`.

use std::fmt;

use uuid::Uuid;

use crate::sequence::SequenceSet;

/// Whether the agent confirmed records end to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// The agent accepted acknowledged mode: `confirmed` is exact.
    Confirmed,
    /// The agent closed the connection before answering the acknowledgement
    /// request (what a reference agent does with the unknown tag); the client
    /// carried on in plain mode, where a record counts as delivered once
    /// written to the socket.
    Unsupported,
    /// Acknowledgements were turned off in the configuration.
    Off,
    /// No agent answered the request (none was reachable).
    Unknown,
}

impl AckMode {
    /// How the mode reads in a summary.
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Confirmed => "confirmed",
            AckMode::Unsupported => "unsupported by the agent",
            AckMode::Off => "off",
            AckMode::Unknown => "unknown (no agent answered)",
        }
    }
}

/// Records the client numbered and then dropped, by reason. The agent hears
/// of them as `dropped_channel_full` in status frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// The queue was full (drop mode).
    pub queue_full: u64,
    /// The queue stayed full for the whole wait (block mode).
    pub queue_timeout: u64,
}

impl DropCounts {
    /// Drops for every reason.
    pub fn total(&self) -> u64 {
        self.queue_full + self.queue_timeout
    }
}

/// Records the agent acknowledged without keeping them, by its reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentRefusals {
    /// Its spool was full under its drop policy (counted at the control plane).
    pub dropped: u64,
    /// It could not decode the frame.
    pub malformed: u64,
    /// It rejected them as invalid, or answered an outcome this client does
    /// not know.
    pub rejected: u64,
}

impl AgentRefusals {
    /// Refusals for every reason.
    pub fn total(&self) -> u64 {
        self.dropped + self.malformed + self.rejected
    }
}

/// What became of the closing status frame, which tells the control plane
/// the session's last sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalStatus {
    /// Not written before the deadline.
    NotSent,
    /// Written to the socket (plain mode).
    Written,
    /// Confirmed by the agent.
    Confirmed,
}

/// The outcome of a session.
///
/// Every number the session assigned ends up in exactly one of: `delivered`,
/// `dropped`, `refused` or `undelivered`. In acknowledged mode `delivered`
/// equals `confirmed`; in plain mode (or after falling back to it) a record
/// is delivered once it was written to the socket.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// The session's id.
    pub session_id: Uuid,
    /// Whether the agent confirmed records, and why not.
    pub acknowledgements: AckMode,
    /// Sequence numbers assigned (`0..assigned`), dropped records included.
    pub assigned: u64,
    /// The last sequence number assigned, -1 when none; sent to the agent
    /// in the final status frame.
    pub final_sequence_number: i64,
    /// Records written to a socket at least once.
    pub sent: SequenceSet,
    /// Records the agent confirmed durable in its spool.
    pub confirmed: SequenceSet,
    /// Records delivered: confirmed, or written in plain mode.
    pub delivered: SequenceSet,
    /// Records the client dropped, by reason.
    pub dropped: DropCounts,
    /// Records the agent acknowledged without keeping them.
    pub refused: AgentRefusals,
    /// Records refused at `record()` (too large, or no request); they have
    /// no sequence number.
    pub rejected: u64,
    /// Numbered records neither delivered, dropped nor refused when the
    /// session ended: the close deadline passed first.
    pub undelivered: u64,
    /// The sequence numbers of `undelivered` the client still held.
    pub undelivered_sequences: SequenceSet,
    /// What became of the closing status frame.
    pub final_status: FinalStatus,
    /// Connections made to the agent.
    pub connections: u64,
    /// Whether `close()` gave up at its deadline.
    pub deadline_expired: bool,
}

impl Summary {
    /// Every numbered record was delivered (confirmed in acknowledged mode)
    /// and none was dropped or refused.
    pub fn is_complete(&self) -> bool {
        self.delivered.len() == self.assigned
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sent {}", self.sent.len())?;
        if self.acknowledgements == AckMode::Confirmed {
            write!(f, ", confirmed {}", self.confirmed.len())?;
        }
        write!(
            f,
            ", dropped {} (queue full {}, queue timeout {})",
            self.dropped.total(),
            self.dropped.queue_full,
            self.dropped.queue_timeout
        )?;
        if self.refused.total() > 0 {
            write!(
                f,
                ", refused by the agent {} (dropped {}, malformed {}, rejected {})",
                self.refused.total(),
                self.refused.dropped,
                self.refused.malformed,
                self.refused.rejected
            )?;
        }
        write!(
            f,
            ", undelivered {}; acknowledgements {}",
            self.undelivered,
            self.acknowledgements.as_str()
        )
    }
}
