//! The record query API from the client side (`warden logs` and tests):
//! [`AdminClient`] calls for records, sessions and summaries, and the
//! record stream read as server-sent events ([`EventStream`]).
//!
//! Record objects come back as raw JSON ([`RawRecord`]) so that a caller
//! can print exactly what the server sent; [`RawRecord::parse`] reads one.

use bytes::{Buf, BytesMut};
use http::Method;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::value::RawValue;

use crate::admin_client::{AdminClient, ClientError, encode_segment};
use crate::query_api::{
    Record, RecordPage, RecordParams, SessionList, SessionListParams, SessionReport,
    SessionReportParams, SummaryList, SummaryParams,
};

/// A record object as the server sent it.
pub type RawRecord = Box<RawValue>;

/// Reading a record object.
pub trait ParseRecord {
    fn parse(&self) -> Result<Record, ClientError>;
}

impl ParseRecord for RawRecord {
    fn parse(&self) -> Result<Record, ClientError> {
        serde_json::from_str(self.get()).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// `?a=1&b=2` of the pairs, values percent-encoded; empty without pairs.
fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(name);
        out.push('=');
        out.push_str(&encode_segment(value));
    }
    out
}

fn pairs<'a>(items: &[(&'static str, &'a Option<String>)]) -> Vec<(&'static str, &'a str)> {
    items
        .iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (*name, v)))
        .collect()
}

impl AdminClient {
    /// A page of records, newest first (`GET /api/v1/records`).
    pub async fn records(
        &self,
        params: &RecordParams,
    ) -> Result<RecordPage<RawRecord>, ClientError> {
        let path = format!("/api/v1/records{}", query_string(params.pairs()));
        self.call(Method::GET, &path, None).await
    }

    /// A page of a workspace's sessions, most recently stored-to first.
    pub async fn sessions(
        &self,
        workspace: &str,
        params: &SessionListParams,
    ) -> Result<SessionList, ClientError> {
        let query = query_string(pairs(&[
            ("limit", &params.limit),
            ("cursor", &params.cursor),
        ]));
        let path = format!(
            "/api/v1/workspaces/{}/sessions{query}",
            encode_segment(workspace)
        );
        self.call(Method::GET, &path, None).await
    }

    /// One session's report with a page of its records in sequence order.
    pub async fn session_report(
        &self,
        workspace: &str,
        session: &str,
        params: &SessionReportParams,
    ) -> Result<SessionReport<RawRecord>, ClientError> {
        let query = query_string(pairs(&[
            ("limit", &params.limit),
            ("cursor", &params.cursor),
            ("max_gaps", &params.max_gaps),
        ]));
        let path = format!(
            "/api/v1/workspaces/{}/sessions/{}{query}",
            encode_segment(workspace),
            encode_segment(session)
        );
        self.call(Method::GET, &path, None).await
    }

    /// Per-workspace summaries over a time range.
    pub async fn summaries(&self, params: &SummaryParams) -> Result<SummaryList, ClientError> {
        let query = query_string(pairs(&[
            ("workspace", &params.workspace),
            ("since", &params.since),
            ("until", &params.until),
            ("top", &params.top),
        ]));
        self.call(Method::GET, &format!("/api/v1/summaries{query}"), None)
            .await
    }

    /// Opens the record stream; `resume` is the id of the last event seen
    /// (sent as `Last-Event-ID`).
    pub async fn stream_records(
        &self,
        params: &RecordParams,
        resume: Option<&str>,
    ) -> Result<EventStream, ClientError> {
        let path = format!("/api/v1/records/stream{}", query_string(params.pairs()));
        let headers: Vec<(&str, &str)> =
            resume.map(|id| ("last-event-id", id)).into_iter().collect();
        let response = self.open(&path, "text/event-stream", &headers).await?;
        Ok(EventStream {
            body: response.into_body(),
            parser: SseParser::default(),
        })
    }
}

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

/// An open record stream.
pub struct EventStream {
    body: Incoming,
    parser: SseParser,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl EventStream {
    /// The next event; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, ClientError> {
        loop {
            if let Some(event) = self.parser.next_event() {
                return Ok(Some(event));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.parser.push(&data);
                    }
                    if self.parser.overflowed() {
                        return Err(ClientError::Decode(
                            "an event stream line is too long".into(),
                        ));
                    }
                }
            }
        }
    }
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

/// Lines longer than this end the stream as malformed rather than use up
/// memory (a record is far smaller).
const MAX_LINE: usize = 16 << 20;

impl SseParser {
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
        self.buffer.len() > MAX_LINE
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

    #[test]
    fn query_strings_encode_values() {
        assert_eq!(query_string([]), "");
        assert_eq!(
            query_string([("workspace", "dev"), ("url_contains", "a&b=c /é")]),
            "?workspace=dev&url_contains=a%26b%3Dc%20%2F%C3%A9"
        );
    }
}
