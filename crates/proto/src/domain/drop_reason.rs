//! Why something was lost or refused before the control plane stored it:
//! one list for the agent (its drop reports and metrics), the control
//! plane's metrics and the store, so that a new reason cannot be known on
//! one side and folded into `other` on the other.

use std::fmt;

/// A reason the agent (or, for [`DropReason::NoRequest`], the control
/// plane's validation) gives for a lost or refused record, frame or
/// connection. On the wire and in the store it is its snake_case name
/// ([`DropReason::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// A frame header with a tag the protocol does not know (the
    /// connection is closed: the stream is unaligned).
    UnknownTag,
    /// A frame header announcing more than its tag allows (closed).
    FrameTooLong,
    /// The connection ended inside a frame (closed).
    TruncatedFrame,
    /// Reading the socket failed (closed).
    ReadError,
    /// A payload that is not a valid message (skipped).
    MalformedFrame,
    /// A tag-2 envelope with neither logs nor status (skipped).
    EmptyEnvelope,
    /// A frame a client may not send at that point (skipped).
    UnexpectedFrame,
    /// A peer whose executable is not on the allowlist (refused).
    PeerNotAllowed,
    /// A connection beyond the connection limit (refused).
    ConnectionLimit,
    /// A connection idle for the idle timeout in the middle of a frame: the
    /// unfinished frame is lost.
    IdleTimeout,
    /// Spooled batches dropped to make room under the `drop_oldest` policy.
    SpoolFull,
    /// The spool could not write a frame (disk full, I/O error).
    SpoolError,
    /// A batch the control plane refused as invalid (kept aside on disk).
    RejectedByControlPlane,
    /// A record that carries no request (refused by the control plane's
    /// validation; counted once, there).
    NoRequest,
    /// The reference agent's in-memory buffer was full. Warden spools
    /// instead and never drops for it; kept as a known value.
    BufferFull,
    /// The reference agent gave up forwarding. Warden keeps retrying from
    /// its spool and never drops for it; kept as a known value.
    ForwardFailed,
}

impl DropReason {
    /// Every reason, in a fixed order (for metrics exported at zero and
    /// tables).
    pub const ALL: [DropReason; 16] = [
        DropReason::UnknownTag,
        DropReason::FrameTooLong,
        DropReason::TruncatedFrame,
        DropReason::ReadError,
        DropReason::MalformedFrame,
        DropReason::EmptyEnvelope,
        DropReason::UnexpectedFrame,
        DropReason::PeerNotAllowed,
        DropReason::ConnectionLimit,
        DropReason::IdleTimeout,
        DropReason::SpoolFull,
        DropReason::SpoolError,
        DropReason::RejectedByControlPlane,
        DropReason::NoRequest,
        DropReason::BufferFull,
        DropReason::ForwardFailed,
    ];

    /// The snake_case name used on the wire, in metrics and in the store.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownTag => "unknown_tag",
            DropReason::FrameTooLong => "frame_too_long",
            DropReason::TruncatedFrame => "truncated_frame",
            DropReason::ReadError => "read_error",
            DropReason::MalformedFrame => "malformed_frame",
            DropReason::EmptyEnvelope => "empty_envelope",
            DropReason::UnexpectedFrame => "unexpected_frame",
            DropReason::PeerNotAllowed => "peer_not_allowed",
            DropReason::ConnectionLimit => "connection_limit",
            DropReason::IdleTimeout => "idle_timeout",
            DropReason::SpoolFull => "spool_full",
            DropReason::SpoolError => "spool_error",
            DropReason::RejectedByControlPlane => "rejected_by_control_plane",
            DropReason::NoRequest => "no_request",
            DropReason::BufferFull => "buffer_full",
            DropReason::ForwardFailed => "forward_failed",
        }
    }

    /// The reason with this name, `None` for any other text (an agent of a
    /// newer release may send reasons this build does not know).
    pub fn parse(name: &str) -> Option<DropReason> {
        DropReason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for reason in DropReason::ALL {
            let name = reason.as_str();
            assert!(seen.insert(name), "{name} twice");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert_eq!(DropReason::parse(name), Some(reason));
            assert_eq!(reason.to_string(), name);
        }
        assert_eq!(DropReason::parse("other"), None);
        assert_eq!(DropReason::parse("Spool_Full"), None);
    }
}
