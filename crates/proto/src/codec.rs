//! The boundary socket framing.
//!
//! ```text
//! byte 0   bytes 1..3            bytes 4 .. 4+len-1
//! [ tag ][ length, 24-bit BE ][ protobuf payload ]
//! ```
//!
//! Written by hand on top of tokio-util's `Decoder`/`Encoder` because
//! `LengthDelimitedCodec` cannot mask the tag out of the length word.
//!
//! Errors come in two kinds, and the split is the protocol's:
//! - [`FrameError`] (unknown tag, over-long length, truncated header or body)
//!   leaves the stream unaligned: the reader must close the connection;
//! - [`MalformedFrame`] (a payload that is not valid protobuf, including
//!   invalid UTF-8) was consumed whole, so the stream is still aligned: skip
//!   the frame, count it, keep reading. The decoder yields it as an item so
//!   a `FramedRead` keeps going.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use tokio_util::codec::{Decoder, Encoder};

use crate::domain::DropReason;
use crate::wire::{
    AckAccepted, AckRequest, BoundaryMessage, BoundaryStatus, FrameAck, ReportBoundaryLogsRequest,
    boundary_message,
};

/// Bytes of the frame header (tag and length).
pub const HEADER_LEN: usize = 4;
/// Largest payload of a tag-0 frame (the original length-prefixed design).
pub const MAX_LEGACY_PAYLOAD: usize = 1 << 20;
/// Largest payload of tag-1, tag-2 and extension frames.
pub const MAX_PAYLOAD: usize = 32768;

/// A frame tag the protocol knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tag {
    /// 0x00: bare `ReportBoundaryLogsRequest`, up to 1 MiB.
    Legacy,
    /// 0x01: bare `ReportBoundaryLogsRequest`, up to 32768 bytes.
    V1,
    /// 0x02: `BoundaryMessage` envelope, up to 32768 bytes.
    Envelope,
    /// 0x40: Warden extension, client asks for acknowledgements.
    AckRequest,
    /// 0x41: Warden extension, agent accepts acknowledged mode.
    AckAccepted,
    /// 0x42: Warden extension, agent confirms one client frame.
    FrameAck,
}

impl Tag {
    /// Every known tag, for tests and tables.
    pub const ALL: [Tag; 6] = [
        Tag::Legacy,
        Tag::V1,
        Tag::Envelope,
        Tag::AckRequest,
        Tag::AckAccepted,
        Tag::FrameAck,
    ];

    /// The tag for a header byte, `None` when the protocol does not know it.
    pub fn from_byte(byte: u8) -> Option<Tag> {
        Some(match byte {
            0x00 => Tag::Legacy,
            0x01 => Tag::V1,
            0x02 => Tag::Envelope,
            0x40 => Tag::AckRequest,
            0x41 => Tag::AckAccepted,
            0x42 => Tag::FrameAck,
            _ => return None,
        })
    }

    /// The header byte.
    pub fn byte(self) -> u8 {
        match self {
            Tag::Legacy => 0x00,
            Tag::V1 => 0x01,
            Tag::Envelope => 0x02,
            Tag::AckRequest => 0x40,
            Tag::AckAccepted => 0x41,
            Tag::FrameAck => 0x42,
        }
    }

    /// Largest legal payload; one byte more is refused.
    pub fn max_payload(self) -> usize {
        match self {
            Tag::Legacy => MAX_LEGACY_PAYLOAD,
            _ => MAX_PAYLOAD,
        }
    }

    /// Whether this tag belongs to Warden's acknowledgement extension.
    pub fn is_extension(self) -> bool {
        self.byte() >= 0x40
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.byte())
    }
}

/// What a frame carries, independent of the framing it came in.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// Records: a bare request (tags 0 and 1) or an envelope's `logs` (tag 2).
    Logs(ReportBoundaryLogsRequest),
    /// Client-counted drops (tag 2 `status`).
    Status(BoundaryStatus),
    /// A tag-2 envelope with neither `logs` nor `status`: counted and skipped.
    EmptyEnvelope,
    /// Client asks for acknowledgements (tag 0x40).
    AckRequest(AckRequest),
    /// Agent accepts acknowledged mode (tag 0x41).
    AckAccepted(AckAccepted),
    /// Agent confirms a client frame (tag 0x42).
    FrameAck(FrameAck),
}

/// A decoded frame and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedFrame {
    /// The frame's tag.
    pub tag: Tag,
    /// Payload bytes on the wire (without the header).
    pub payload_len: usize,
    /// What it carries.
    pub frame: Frame,
}

/// The stream is unaligned or broken: close the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A tag the protocol does not know.
    #[error("unknown frame tag {tag:#04x}")]
    UnknownTag {
        /// The header's tag byte.
        tag: u8,
    },
    #[error("frame length {len} exceeds the {max}-byte maximum of tag {tag:#04x}")]
    /// A length over the tag's maximum.
    TooLong {
        /// The tag byte.
        tag: u8,
        /// The announced length.
        len: usize,
        /// The tag's maximum.
        max: usize,
    },
    #[error("connection ended inside a frame ({have} of {need} bytes)")]
    /// The stream ended inside a header or body.
    Truncated {
        /// Bytes read of the frame.
        have: usize,
        /// Bytes the frame needed.
        need: usize,
    },
    /// Reading the socket failed.
    #[error("reading the socket")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// The drop reason it is counted under.
    pub fn drop_reason(&self) -> DropReason {
        match self {
            FrameError::UnknownTag { .. } => DropReason::UnknownTag,
            FrameError::TooLong { .. } => DropReason::FrameTooLong,
            FrameError::Truncated { .. } => DropReason::TruncatedFrame,
            FrameError::Io(_) => DropReason::ReadError,
        }
    }

    /// A stable snake_case reason for metrics and drop counts.
    pub fn reason(&self) -> &'static str {
        self.drop_reason().as_str()
    }
}

/// A frame whose payload is not a valid message; it was consumed whole and
/// the stream is still aligned.
#[derive(Debug, thiserror::Error)]
#[error("tag {tag} frame of {payload_len} bytes is not a valid message")]
pub struct MalformedFrame {
    /// The frame's tag.
    pub tag: Tag,
    /// Its payload's length.
    pub payload_len: usize,
    /// Why it is not a valid message.
    #[source]
    pub source: prost::DecodeError,
}

impl MalformedFrame {
    /// The reason used in drop counts.
    pub const REASON: &'static str = DropReason::MalformedFrame.as_str();
}

/// A writer refused to produce a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    /// The payload would pass the tag's maximum.
    #[error("message too large for tag {tag}: {size} > {max}")]
    TooLarge {
        /// The tag.
        tag: Tag,
        /// The payload's size.
        size: usize,
        /// The tag's maximum.
        max: usize,
    },
    /// The frame cannot be sent with this tag.
    #[error("a {frame} frame cannot be sent with tag {tag}")]
    TagMismatch {
        /// The tag.
        tag: Tag,
        /// What the frame is.
        frame: &'static str,
    },
}

/// Decodes and encodes boundary frames; use with `FramedRead`/`FramedWrite`.
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameCodec;

impl Decoder for FrameCodec {
    type Item = Result<DecodedFrame, MalformedFrame>;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, FrameError> {
        let Some(header) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let (tag, len) = parse_header([header[0], header[1], header[2], header[3]])?;
        let need = HEADER_LEN + len;
        if src.len() < need {
            src.reserve(need - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(len).freeze();
        Ok(Some(decode_payload(tag, payload)))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, FrameError> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None if src.is_empty() => Ok(None),
            None => {
                let need = match src.get(..HEADER_LEN) {
                    Some(h) => HEADER_LEN + (u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize),
                    None => HEADER_LEN,
                };
                Err(FrameError::Truncated {
                    have: src.len(),
                    need,
                })
            }
        }
    }
}

/// Checks a header: the tag must be known and the length within its maximum.
pub fn parse_header(header: [u8; HEADER_LEN]) -> Result<(Tag, usize), FrameError> {
    let word = u32::from_be_bytes(header);
    let tag_byte = (word >> 24) as u8;
    let len = (word & 0x00ff_ffff) as usize;
    let tag = Tag::from_byte(tag_byte).ok_or(FrameError::UnknownTag { tag: tag_byte })?;
    if len > tag.max_payload() {
        return Err(FrameError::TooLong {
            tag: tag_byte,
            len,
            max: tag.max_payload(),
        });
    }
    Ok((tag, len))
}

/// Decodes one payload of a known tag.
pub fn decode_payload(tag: Tag, payload: Bytes) -> Result<DecodedFrame, MalformedFrame> {
    let payload_len = payload.len();
    let malformed = |source| MalformedFrame {
        tag,
        payload_len,
        source,
    };
    let frame = match tag {
        Tag::Legacy | Tag::V1 => {
            Frame::Logs(ReportBoundaryLogsRequest::decode(payload).map_err(malformed)?)
        }
        Tag::Envelope => match BoundaryMessage::decode(payload).map_err(malformed)?.msg {
            Some(boundary_message::Msg::Logs(logs)) => Frame::Logs(logs),
            Some(boundary_message::Msg::Status(status)) => Frame::Status(status),
            None => Frame::EmptyEnvelope,
        },
        Tag::AckRequest => Frame::AckRequest(AckRequest::decode(payload).map_err(malformed)?),
        Tag::AckAccepted => Frame::AckAccepted(AckAccepted::decode(payload).map_err(malformed)?),
        Tag::FrameAck => Frame::FrameAck(FrameAck::decode(payload).map_err(malformed)?),
    };
    Ok(DecodedFrame {
        tag,
        payload_len,
        frame,
    })
}

/// Payload size `frame` would have when sent with `tag`.
pub fn payload_len(tag: Tag, frame: &Frame) -> Result<usize, EncodeError> {
    Ok(match (tag, frame) {
        (Tag::Legacy | Tag::V1, Frame::Logs(logs)) => logs.encoded_len(),
        (Tag::Envelope, Frame::Logs(logs)) => envelope_len(logs.encoded_len()),
        (Tag::Envelope, Frame::Status(status)) => envelope_len(status.encoded_len()),
        (Tag::Envelope, Frame::EmptyEnvelope) => 0,
        (Tag::AckRequest, Frame::AckRequest(m)) => m.encoded_len(),
        (Tag::AckAccepted, Frame::AckAccepted(m)) => m.encoded_len(),
        (Tag::FrameAck, Frame::FrameAck(m)) => m.encoded_len(),
        (tag, frame) => {
            return Err(EncodeError::TagMismatch {
                tag,
                frame: frame.kind(),
            });
        }
    })
}

/// Size of a `BoundaryMessage` whose oneof member encodes to `inner` bytes.
///
/// Public so that writers can size a tag-2 frame incrementally (record by
/// record) instead of re-encoding it.
pub fn envelope_len(inner: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(inner as u64) + inner
}

/// Appends one frame to `dst`, refusing (and writing nothing) when the
/// payload would pass the tag's maximum.
pub fn encode_frame(tag: Tag, frame: &Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
    let len = payload_len(tag, frame)?;
    if len > tag.max_payload() {
        return Err(EncodeError::TooLarge {
            tag,
            size: len,
            max: tag.max_payload(),
        });
    }
    dst.reserve(HEADER_LEN + len);
    dst.put_u32((u32::from(tag.byte()) << 24) | len as u32);
    // Encoding into a buffer with enough room cannot fail.
    let encoded = match frame {
        Frame::Logs(logs) if tag == Tag::Envelope => {
            prost::encoding::message::encode(1, logs, dst);
            Ok(())
        }
        Frame::Logs(logs) => logs.encode(dst),
        Frame::Status(status) => {
            prost::encoding::message::encode(2, status, dst);
            Ok(())
        }
        Frame::EmptyEnvelope => Ok(()),
        Frame::AckRequest(m) => m.encode(dst),
        Frame::AckAccepted(m) => m.encode(dst),
        Frame::FrameAck(m) => m.encode(dst),
    };
    debug_assert!(encoded.is_ok(), "buffer was reserved");
    Ok(())
}

impl Frame {
    fn kind(&self) -> &'static str {
        match self {
            Frame::Logs(_) => "logs",
            Frame::Status(_) => "status",
            Frame::EmptyEnvelope => "empty envelope",
            Frame::AckRequest(_) => "ack request",
            Frame::AckAccepted(_) => "ack accepted",
            Frame::FrameAck(_) => "frame ack",
        }
    }
}

impl<'a> Encoder<(Tag, &'a Frame)> for FrameCodec {
    type Error = std::io::Error;

    fn encode(
        &mut self,
        (tag, frame): (Tag, &'a Frame),
        dst: &mut BytesMut,
    ) -> std::io::Result<()> {
        encode_frame(tag, frame, dst).map_err(std::io::Error::other)
    }
}

impl Encoder<(Tag, Frame)> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, (tag, frame): (Tag, Frame), dst: &mut BytesMut) -> std::io::Result<()> {
        encode_frame(tag, &frame, dst).map_err(std::io::Error::other)
    }
}
