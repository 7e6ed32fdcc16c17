//! One connection to the agent: dialing (with the acknowledgement request
//! first when wanted), the write side with the frame being written, and the
//! read side that brings the agent's acknowledgements (or its EOF).
//!
//! The helpers take `Option`s and pend forever on `None`, so the background
//! task can put them in one `select!` whether or not it is connected.

use std::io;
use std::path::Path;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;
use warden_proto::codec::{DecodedFrame, FrameCodec, FrameError, MalformedFrame};
use warden_proto::socket::{QuietStream, ReadHalf, WriteHalf};

/// What the read side yields: a frame, a frame that did not decode, or the
/// end of the connection.
pub(crate) type Incoming = Option<Result<Result<DecodedFrame, MalformedFrame>, FrameError>>;

#[derive(Debug)]
pub(crate) struct WriteSide {
    half: WriteHalf,
    /// What is left of the frame being written; `None` when idle.
    pub(crate) current: Option<Bytes>,
}

impl WriteSide {
    /// Whether the frame being written is done.
    pub(crate) fn frame_done(&self) -> bool {
        self.current.as_ref().is_some_and(|b| !b.has_remaining())
    }
}

#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) writer: WriteSide,
    pub(crate) reader: FramedRead<ReadHalf, FrameCodec>,
    /// This connection began with an acknowledgement request.
    pub(crate) ack_requested: bool,
    /// The agent answered it with `AckAccepted`.
    pub(crate) accepted: bool,
    /// Number of the last frame the agent acknowledged (frames count from 1).
    pub(crate) acked: u64,
    /// A frame naming the session (logs or anchor) was written on this
    /// connection, so status frames are attributed to it.
    pub(crate) names_session: bool,
}

impl Link {
    /// Connects to the agent and, when `ack_request` is given, writes it as
    /// the first frame.
    pub(crate) async fn dial(path: &Path, ack_request: Option<&Bytes>) -> io::Result<Link> {
        let stream = QuietStream::from_tokio(tokio::net::UnixStream::connect(path).await?)?;
        let (read, mut write) = stream.into_split();
        if let Some(request) = ack_request {
            write.write_all(request).await?;
        }
        Ok(Link {
            writer: WriteSide {
                half: write,
                current: None,
            },
            reader: FramedRead::new(read, FrameCodec),
            ack_requested: ack_request.is_some(),
            accepted: false,
            acked: 0,
            names_session: false,
        })
    }

    /// Ends the write side cleanly so the agent reads EOF after the last frame.
    pub(crate) async fn shutdown(mut self) -> io::Result<()> {
        self.writer.half.shutdown().await
    }
}

/// Writes some of the current frame (cancel safe: a cancelled write wrote
/// nothing). Pends when there is nothing to write.
pub(crate) async fn write_some(side: Option<&mut WriteSide>) -> io::Result<()> {
    let Some(side) = side else {
        return std::future::pending().await;
    };
    let Some(frame) = side.current.as_mut().filter(|b| b.has_remaining()) else {
        return std::future::pending().await;
    };
    match side.half.write_buf(frame).await? {
        0 => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the agent socket took no bytes",
        )),
        _ => Ok(()),
    }
}

/// The next frame from the agent (cancel safe). Pends when not connected.
pub(crate) async fn read_next(reader: Option<&mut FramedRead<ReadHalf, FrameCodec>>) -> Incoming {
    match reader {
        Some(reader) => reader.next().await,
        None => std::future::pending().await,
    }
}
