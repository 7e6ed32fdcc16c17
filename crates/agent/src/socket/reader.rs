//! Reading frames off one connection, allocating as bytes arrive: the
//! buffer grows by at most [`READ_CHUNK`] per read, never to a length a
//! header merely announced, and a large frame waits for its share of the
//! [`FrameBudget`] before its payload is read.

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use warden_proto::codec::{FrameError, HEADER_LEN, Tag, parse_header};
use warden_proto::socket::ReadHalf;

use super::budget::{Charge, FrameBudget, SMALL_FRAME};

/// Most bytes one read asks for.
pub const READ_CHUNK: usize = 64 * 1024;

/// One frame as it came off the wire.
#[derive(Debug)]
pub struct RawFrame {
    /// Its tag.
    pub tag: Tag,
    /// Its payload (without the header).
    pub payload: Bytes,
    /// The budget it holds until it is settled.
    pub charge: Charge,
}

/// Reads frames from one connection.
pub struct FrameReader {
    read: ReadHalf,
    buf: BytesMut,
    budget: FrameBudget,
    /// The charge of the large frame being read.
    charge: Option<Charge>,
}

impl FrameReader {
    /// Reads from `read`, charging large frames to `budget`.
    pub fn new(read: ReadHalf, budget: FrameBudget) -> Self {
        FrameReader {
            read,
            buf: BytesMut::new(),
            budget,
            charge: None,
        }
    }

    /// Whether part of a frame has been read.
    pub fn in_frame(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next frame; `None` at the end of the stream. An error leaves the
    /// stream unaligned: the caller closes the connection. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<RawFrame, FrameError>> {
        loop {
            if let Some(frame) = self.complete() {
                return Some(frame);
            }
            let want = match self.buf.get(..HEADER_LEN) {
                None => HEADER_LEN - self.buf.len(),
                Some(header) => {
                    let header = [header[0], header[1], header[2], header[3]];
                    // Checked by `complete` already.
                    let (_, len) = parse_header(header).ok()?;
                    if len > SMALL_FRAME && self.charge.is_none() {
                        self.charge = Some(self.budget.take(len).await);
                    }
                    HEADER_LEN + len - self.buf.len()
                }
            };
            self.buf.reserve(want.clamp(HEADER_LEN, READ_CHUNK));
            match self.read.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return None,
                Ok(0) => {
                    let have = self.buf.len();
                    let need = match self.buf.get(..HEADER_LEN) {
                        Some(h) => {
                            HEADER_LEN + (u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize)
                        }
                        None => HEADER_LEN,
                    };
                    self.buf.clear();
                    self.charge = None;
                    return Some(Err(FrameError::Truncated { have, need }));
                }
                Ok(_) => {}
                Err(e) => {
                    self.buf.clear();
                    self.charge = None;
                    return Some(Err(FrameError::Io(e)));
                }
            }
        }
    }

    /// A whole frame (or a header error) from what was read, if there is one.
    fn complete(&mut self) -> Option<Result<RawFrame, FrameError>> {
        let header = self.buf.get(..HEADER_LEN)?;
        let (tag, len) = match parse_header([header[0], header[1], header[2], header[3]]) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.buf.clear();
                return Some(Err(e));
            }
        };
        if self.buf.len() < HEADER_LEN + len {
            return None;
        }
        let mut frame = self.buf.split_to(HEADER_LEN + len);
        let payload = frame.split_off(HEADER_LEN).freeze();
        let charge = self.charge.take().unwrap_or_else(Charge::none);
        Some(Ok(RawFrame {
            tag,
            payload,
            charge,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixStream;
    use warden_proto::socket::QuietStream;

    fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = ((u32::from(tag) << 24) | payload.len() as u32)
            .to_be_bytes()
            .to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[tokio::test]
    async fn frames_come_whole_whatever_the_reads() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let (read, _write) = QuietStream::from_tokio(a).unwrap().into_split();
        let mut reader = FrameReader::new(read, FrameBudget::new(1 << 20));
        let big = vec![7u8; 100_000];
        let mut bytes = frame(1, b"one");
        bytes.extend(frame(0, &big));
        bytes.extend(frame(2, b""));
        let writer = tokio::spawn(async move {
            for chunk in bytes.chunks(777) {
                b.write_all(chunk).await.unwrap();
            }
        });
        let one = reader.next().await.unwrap().unwrap();
        assert_eq!((one.tag, &one.payload[..]), (Tag::V1, &b"one"[..]));
        let two = reader.next().await.unwrap().unwrap();
        assert_eq!((two.tag, two.payload.len()), (Tag::Legacy, big.len()));
        let three = reader.next().await.unwrap().unwrap();
        assert_eq!((three.tag, three.payload.len()), (Tag::Envelope, 0));
        writer.await.unwrap();
        assert!(reader.next().await.is_none());
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_frame_or_a_bad_header_is_an_error() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let (read, _write) = QuietStream::from_tokio(a).unwrap().into_split();
        let mut reader = FrameReader::new(read, FrameBudget::new(1 << 20));
        b.write_all(&frame(1, b"whole")[..6]).await.unwrap();
        drop(b);
        assert!(matches!(
            reader.next().await,
            Some(Err(FrameError::Truncated { have: 6, need: 9 }))
        ));

        let (a, mut b) = UnixStream::pair().unwrap();
        let (read, _write) = QuietStream::from_tokio(a).unwrap().into_split();
        let mut reader = FrameReader::new(read, FrameBudget::new(1 << 20));
        b.write_all(&[0x09, 0, 0, 1, 0]).await.unwrap();
        assert!(matches!(
            reader.next().await,
            Some(Err(FrameError::UnknownTag { tag: 9 }))
        ));
    }
}
