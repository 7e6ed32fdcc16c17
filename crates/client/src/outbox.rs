//! Encoded frames waiting to be written, or (in acknowledged mode) written
//! and waiting for their `FrameAck`.
//!
//! The frames form one queue in sending order. The first `in_flight` of them
//! were written on the current connection and await acknowledgement; the
//! rest are unwritten. In plain mode a frame leaves the queue as soon as it
//! is written, so `in_flight` stays 0. After a reconnect `in_flight` goes back
//! to 0 and everything still here is sent again, which is safe because the
//! control plane deduplicates by session and sequence number.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::sequence::SequenceSet;

/// One encoded frame and what it carries.
#[derive(Debug)]
pub(crate) struct Pending {
    /// The whole frame (header and payload), ready to write.
    pub(crate) bytes: Bytes,
    pub(crate) kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// A batch of records.
    Logs { seqs: SequenceSet, records: usize },
    /// An empty logs frame that only names the session, written before a
    /// status frame on a connection that has carried no logs yet: status
    /// frames have no session id and the agent attributes them to the last
    /// logs frame of the connection.
    Anchor,
    /// Drop counts, and on close the final sequence number.
    Status { is_final: bool },
}

impl Pending {
    pub(crate) fn records(&self) -> usize {
        match &self.kind {
            Kind::Logs { records, .. } => *records,
            _ => 0,
        }
    }

    /// Whether this frame tells the agent which session the connection is.
    pub(crate) fn names_session(&self) -> bool {
        matches!(self.kind, Kind::Logs { .. } | Kind::Anchor)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    frames: VecDeque<Pending>,
    in_flight: usize,
    records: usize,
}

impl Outbox {
    pub(crate) fn push(&mut self, frame: Pending) {
        self.records += frame.records();
        self.frames.push_back(frame);
    }

    /// Records held, written or not.
    pub(crate) fn records(&self) -> usize {
        self.records
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames written on this connection and not yet acknowledged.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The next frame to write on this connection.
    pub(crate) fn next_unwritten(&self) -> Option<&Pending> {
        self.frames.get(self.in_flight)
    }

    /// Puts `frame` before the next unwritten one.
    pub(crate) fn insert_next(&mut self, frame: Pending) {
        self.records += frame.records();
        self.frames.insert(self.in_flight, frame);
    }

    /// Plain mode: the next frame was written and is done with.
    pub(crate) fn take_written(&mut self) -> Option<Pending> {
        debug_assert_eq!(self.in_flight, 0, "plain mode keeps nothing in flight");
        self.pop_front()
    }

    /// Acknowledged mode: the next frame was written and awaits its ack.
    /// Returns it, to account for it.
    pub(crate) fn mark_in_flight(&mut self) -> Option<&Pending> {
        let frame = self.frames.get(self.in_flight)?;
        self.in_flight += 1;
        Some(frame)
    }

    /// Acknowledged mode: the oldest frame in flight was acknowledged.
    pub(crate) fn take_acknowledged(&mut self) -> Option<Pending> {
        if self.in_flight == 0 {
            return None;
        }
        self.in_flight -= 1;
        self.pop_front()
    }

    /// The connection is gone: everything left will be written again.
    pub(crate) fn rewind(&mut self) {
        self.in_flight = 0;
    }

    /// Empties the outbox (on close), oldest first.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Pending> + '_ {
        self.in_flight = 0;
        self.records = 0;
        self.frames.drain(..)
    }

    fn pop_front(&mut self) -> Option<Pending> {
        let frame = self.frames.pop_front()?;
        self.records -= frame.records();
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(seqs: &[i32]) -> Pending {
        Pending {
            bytes: Bytes::from_static(b"logs"),
            kind: Kind::Logs {
                seqs: seqs.iter().copied().collect(),
                records: seqs.len(),
            },
        }
    }

    fn status() -> Pending {
        Pending {
            bytes: Bytes::from_static(b"status"),
            kind: Kind::Status { is_final: false },
        }
    }

    fn first_seq(p: &Pending) -> Option<i32> {
        match &p.kind {
            Kind::Logs { seqs, .. } => seqs.first(),
            _ => None,
        }
    }

    #[test]
    fn acknowledged_frames_leave_in_order_and_the_rest_is_resent_after_rewind() {
        let mut out = Outbox::default();
        out.push(logs(&[0, 1]));
        out.push(logs(&[2]));
        out.push(status());
        assert_eq!(out.records(), 3);
        assert_eq!(first_seq(out.mark_in_flight().unwrap()), Some(0));
        assert_eq!(first_seq(out.mark_in_flight().unwrap()), Some(2));
        assert!(matches!(
            out.next_unwritten().unwrap().kind,
            Kind::Status { .. }
        ));
        assert_eq!(first_seq(&out.take_acknowledged().unwrap()), Some(0));
        assert_eq!(out.records(), 1);
        assert_eq!(out.in_flight(), 1);
        // The connection drops: frame [2] was written but never acknowledged.
        out.rewind();
        assert_eq!(first_seq(out.next_unwritten().unwrap()), Some(2));
        assert!(
            out.take_acknowledged().is_none(),
            "nothing is in flight after a rewind"
        );
    }

    #[test]
    fn plain_frames_leave_when_written_and_inserts_go_before_the_next_unwritten() {
        let mut out = Outbox::default();
        out.push(status());
        out.insert_next(Pending {
            bytes: Bytes::from_static(b"anchor"),
            kind: Kind::Anchor,
        });
        assert!(out.next_unwritten().unwrap().names_session());
        assert!(matches!(out.take_written().unwrap().kind, Kind::Anchor));
        assert!(matches!(
            out.take_written().unwrap().kind,
            Kind::Status { .. }
        ));
        assert!(out.is_empty());
        assert!(out.take_written().is_none());
    }
}
