//! The acknowledged mode of Warden's socket extension (frames in
//! `proto/warden/ack/v1/ack.proto`): after a client's first frame asks for
//! it (tag 0x40), the agent answers `AckAccepted` (0x41) and then one
//! `FrameAck` (0x42) per client frame, in order, once the frame is settled
//! (durable in the spool, or known to be malformed or dropped).
//!
//! Reference clients never ask, so they never receive a byte.

use futures::SinkExt;
use tokio_util::codec::FramedWrite;
use warden_proto::codec::{Frame, FrameCodec, Tag};
use warden_proto::socket::WriteHalf;
use warden_proto::wire::{AckAccepted, FrameAck, frame_ack};

/// The extension version this agent speaks.
pub const VERSION: u32 = 1;

/// How one client frame was settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Every record that carried a request is durable; `rejected` records
    /// carried none.
    Durable {
        /// Records kept.
        records: u32,
        /// Records refused for carrying no request.
        rejected: u32,
    },
    /// The payload was not a valid message (or not one a client may send).
    Malformed,
    /// The spool could not keep the frame.
    Dropped,
}

impl Settled {
    fn to_wire(self, frame: u64) -> FrameAck {
        let (outcome, records, rejected) = match self {
            Settled::Durable { records, rejected } => {
                (frame_ack::Outcome::Durable, records, rejected)
            }
            Settled::Malformed => (frame_ack::Outcome::Malformed, 0, 0),
            Settled::Dropped => (frame_ack::Outcome::Dropped, 0, 0),
        };
        FrameAck {
            frame,
            outcome: outcome as i32,
            records,
            rejected,
        }
    }
}

/// Writes the agent's side of the acknowledged mode on one connection.
pub struct AckWriter {
    out: FramedWrite<WriteHalf, FrameCodec>,
    next_frame: u64,
}

impl AckWriter {
    /// Answers the client's request, turning the acknowledged mode on.
    pub async fn accept(write: WriteHalf) -> std::io::Result<AckWriter> {
        let mut out = FramedWrite::new(write, FrameCodec);
        out.send((
            Tag::AckAccepted,
            Frame::AckAccepted(AckAccepted { version: VERSION }),
        ))
        .await?;
        Ok(AckWriter { out, next_frame: 1 })
    }

    /// Queues the acknowledgement of the next frame (numbered from 1).
    pub async fn queue(&mut self, settled: Settled) -> std::io::Result<()> {
        let ack = settled.to_wire(self.next_frame);
        self.next_frame += 1;
        self.out.feed((Tag::FrameAck, Frame::FrameAck(ack))).await
    }

    /// Sends what was queued.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        SinkExt::<(Tag, Frame)>::flush(&mut self.out).await
    }
}
