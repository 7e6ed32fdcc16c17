//! The `text/event-stream` format (server-sent events), read
//! incrementally: bytes in, events out.

use bytes::{Buf, BytesMut};

/// One server-sent event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`message` when absent).
    pub event: String,
    /// The `id:` field, when the event had one.
    pub id: Option<String>,
    /// The `data:` lines, joined by newlines.
    pub data: String,
}

/// The `text/event-stream` format, incrementally: bytes in, events out.
/// Comments (keep-alives) and fields other than `event`, `id` and `data`
/// are skipped; lines may end in `\n`, `\r\n` or `\r`.
#[derive(Default)]
pub struct SseParser {
    buffer: BytesMut,
    event: SseEvent,
    has_data: bool,
    /// The previous chunk ended in `\r`: a `\n` starting the next one is
    /// part of that line end.
    after_cr: bool,
}

impl std::fmt::Debug for SseParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseParser").finish_non_exhaustive()
    }
}

impl SseParser {
    /// Lines longer than this end the stream as malformed rather than use
    /// up memory (a record is far smaller).
    pub const MAX_LINE: usize = 16 << 20;

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete event in what was pushed, if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            match self.buffer.first() {
                // Wait: the next chunk may start with the `\n` of a `\r\n`.
                None => return None,
                Some(b'\n') if self.after_cr => self.buffer.advance(1),
                Some(_) => {}
            }
            self.after_cr = false;
            let end = self
                .buffer
                .iter()
                .position(|b| *b == b'\n' || *b == b'\r')?;
            let line = self.buffer.split_to(end);
            let terminator = self.buffer[0];
            self.buffer.advance(1);
            if terminator == b'\r' {
                self.after_cr = true;
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                let done = std::mem::take(&mut self.event);
                let had_data = std::mem::take(&mut self.has_data);
                if had_data {
                    return Some(SseEvent {
                        event: if done.event.is_empty() {
                            "message".into()
                        } else {
                            done.event
                        },
                        ..done
                    });
                }
                // An event without data is not dispatched (the server
                // sends none).
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_ref(), ""),
            };
            match field {
                "event" => self.event.event = value.to_owned(),
                "id" if !value.contains('\0') => self.event.id = Some(value.to_owned()),
                "data" => {
                    if self.has_data {
                        self.event.data.push('\n');
                    }
                    self.event.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
    }

    /// Whether a line has grown past any sensible size.
    pub fn overflowed(&self) -> bool {
        self.buffer.len() > Self::MAX_LINE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&str]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.push(chunk.as_bytes());
            while let Some(e) = parser.next_event() {
                out.push(e);
            }
        }
        out
    }

    #[test]
    fn events_are_parsed_across_chunks_and_line_ends() {
        let got = events(&[
            ": keep-alive\n\nevent: rec",
            "ord\nid: r1\ndata: {\"a\":1}\n",
            "\r\nevent: position\r",
            "\nid: r2\rdata: x\rdata:y\r\r",
            "data\n\n",
        ]);
        assert_eq!(
            got,
            [
                SseEvent {
                    event: "record".into(),
                    id: Some("r1".into()),
                    data: r#"{"a":1}"#.into()
                },
                SseEvent {
                    event: "position".into(),
                    id: Some("r2".into()),
                    data: "x\ny".into()
                },
                SseEvent {
                    event: "message".into(),
                    id: None,
                    data: String::new()
                },
            ]
        );
    }
}
