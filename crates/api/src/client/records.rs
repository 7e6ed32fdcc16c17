//! The record query API from the client side (`warden logs` and tests):
//! [`ApiClient`] calls for records, sessions and summaries, and the record
//! stream read as server-sent events ([`EventStream`]).
//!
//! Record objects come back as raw JSON ([`RawRecord`]) so that a caller
//! can print exactly what the server sent; [`ParseRecord::parse`] reads one.

use http::Method;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::value::RawValue;

use super::sse::{SseEvent, SseParser};
use super::{ApiClient, ClientError, DecodeError, encode_segment};
use crate::records::{
    Record, RecordPage, RecordParams, SessionList, SessionListParams, SessionReport,
    SessionReportParams, SummaryList, SummaryParams,
};

/// A record object as the server sent it.
pub type RawRecord = Box<RawValue>;

/// Reading a record object.
pub trait ParseRecord {
    /// The record object read as a [`Record`].
    fn parse(&self) -> Result<Record, ClientError>;
}

impl ParseRecord for RawRecord {
    fn parse(&self) -> Result<Record, ClientError> {
        serde_json::from_str(self.get()).map_err(|e| ClientError::Decode(e.into()))
    }
}

/// `?a=1&b=2` of the parameters that are set (form-encoded, as the
/// server's query extractor reads them); empty when none is.
fn query_string(params: &impl Serialize) -> Result<String, ClientError> {
    let query =
        serde_urlencoded::to_string(params).map_err(|e| ClientError::Encode(Box::new(e)))?;
    Ok(if query.is_empty() {
        query
    } else {
        format!("?{query}")
    })
}

impl ApiClient {
    /// A page of records, newest first (`GET /api/v1/records`).
    pub async fn records(
        &self,
        params: &RecordParams,
    ) -> Result<RecordPage<RawRecord>, ClientError> {
        let path = format!("/api/v1/records{}", query_string(params)?);
        self.call(Method::GET, &path, None).await
    }

    /// A page of a workspace's sessions, most recently stored-to first.
    pub async fn sessions(
        &self,
        workspace: &str,
        params: &SessionListParams,
    ) -> Result<SessionList, ClientError> {
        let query = query_string(params)?;
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
        let query = query_string(params)?;
        let path = format!(
            "/api/v1/workspaces/{}/sessions/{}{query}",
            encode_segment(workspace),
            encode_segment(session)
        );
        self.call(Method::GET, &path, None).await
    }

    /// Per-workspace summaries over a time range.
    pub async fn summaries(&self, params: &SummaryParams) -> Result<SummaryList, ClientError> {
        let query = query_string(params)?;
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
        let path = format!("/api/v1/records/stream{}", query_string(params)?);
        let headers: Vec<(&str, &str)> =
            resume.map(|id| ("last-event-id", id)).into_iter().collect();
        let response = self.open(&path, "text/event-stream", &headers).await?;
        Ok(EventStream {
            body: response.into_body(),
            parser: SseParser::default(),
        })
    }
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
                        return Err(ClientError::Decode(DecodeError::LineTooLong(
                            SseParser::MAX_LINE,
                        )));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_hold_the_set_parameters_encoded() {
        assert_eq!(query_string(&RecordParams::default()).unwrap(), "");
        let params = RecordParams {
            workspace: Some("dev".into()),
            url_contains: Some("a&b=c /é+".into()),
            limit: Some("5".into()),
            ..Default::default()
        };
        let query = query_string(&params).unwrap();
        assert_eq!(
            query,
            "?workspace=dev&url_contains=a%26b%3Dc+%2F%C3%A9%2B&limit=5"
        );
        // The server reads them back as they were.
        let back: RecordParams = serde_urlencoded::from_str(&query[1..]).unwrap();
        assert_eq!(back, params);
        let sessions = SessionReportParams {
            max_gaps: Some("0".into()),
            ..Default::default()
        };
        assert_eq!(query_string(&sessions).unwrap(), "?max_gaps=0");
    }
}
