//! `GET /api/v1/records/stream`: new matching records as server-sent
//! events, oldest first, resumable without a gap or a repeat.
//!
//! The cursor is a record id, and record ids grow in commit order (the
//! store's contract, on SQLite and on PostgreSQL alike), so "every record
//! with an id above the cursor" is exactly what a follower has not seen.
//! Each `record` event carries its cursor as the SSE `id:`; a client that
//! reconnects sends the last one back (`Last-Event-ID`, or `?after=`) and
//! the stream goes on from there.
//!
//! The follower reads `id > cursor` whenever this server commits records
//! (the store's local commit notification) and at least every
//! [`POLL_INTERVAL`], for what other replicas on a shared database commit.
//! When a filter skips records, the stream also sends `position` events (at
//! most once per poll) so that a client resuming later does not make the
//! server scan what it already passed.
//!
//! Each stream ends when the server shuts down (a graceful shutdown would
//! otherwise wait its whole grace period for it); clients reconnect.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use axum::routing::get;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use warden_api::records::{EVENT_POSITION, EVENT_RECORD, RecordParams};
use warden_store::{Order, RecordId, RecordQuery, Store, StoreError};

use super::cursor::RecordCursor;
use super::records::{RecordOut, query, record_query};
use super::{AppState, HttpError};

/// How often a follower looks for records committed elsewhere.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often an idle stream sends a comment, so that proxies keep it open
/// and a client notices a dead connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Records read per query.
const PAGE: u32 = 500;
/// Events buffered for a slow client before the follower waits.
const BUFFER: usize = 256;

/// The `Last-Event-ID` request header.
const LAST_EVENT_ID: &str = "last-event-id";

type EventResult = Result<Event, Infallible>;

/// The stream's route.
pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/records/stream", get(follow))
}

async fn follow(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<RecordParams>, QueryRejection>,
) -> Result<Sse<KeepAliveStream<ReceiverStream<EventResult>>>, HttpError> {
    let params = query(params)?;
    if params.cursor.is_some() || params.limit.is_some() {
        return Err(HttpError::bad_request(
            "cursor and limit are page parameters; the stream takes after (or Last-Event-ID)",
        ));
    }
    // A reconnecting EventSource sends Last-Event-ID with the URL it first
    // used, so the header is the more recent position.
    let resume = match headers.get(LAST_EVENT_ID) {
        Some(value) => Some(value.to_str().unwrap_or("\u{fffd}").to_owned()),
        None => params.after.clone(),
    };
    let resume = resume
        .as_deref()
        .map(str::parse::<RecordCursor>)
        .transpose()
        .map_err(|e| HttpError::bad_request(e.to_string()))?;
    let mut query = record_query(&state, &params).await?;
    query.order = Order::OldestFirst;
    query.limit = PAGE;
    let head = state.store.last_record_id().await?.unwrap_or(0);
    let cursor = match resume {
        // Ids grow in commit order and the newest record is never purged,
        // so every cursor the server handed out is at or below the head. One
        // above it is made up, and following it would deliver nothing until
        // that many records were stored.
        Some(c) if c.0 > head => {
            return Err(HttpError::bad_request(format!(
                "cursor {c} is beyond the newest record ({}); resume from a cursor the server returned, or omit it to follow from now",
                RecordCursor(head)
            )));
        }
        Some(c) => c.0,
        // From now on: nothing stored so far.
        None => head,
    };
    let (events, stream) = mpsc::channel(BUFFER);
    let follower = Follower {
        store: Arc::clone(&state.store),
        commits: Some(state.store.local_commits()),
        stop: state.shutdown.clone(),
        query,
        cursor,
        announced: cursor,
        events,
    };
    tokio::spawn(follower.run());
    Ok(Sse::new(ReceiverStream::new(stream)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// Feeds one stream.
struct Follower {
    store: Arc<dyn Store>,
    /// `None` once the store stopped notifying (it is closing).
    commits: Option<watch::Receiver<RecordId>>,
    stop: CancellationToken,
    /// The stream's filters; `after_id` is set per read.
    query: RecordQuery,
    /// Every matching record up to here was sent (or skipped by the filter).
    cursor: RecordId,
    /// The `id:` of the last event sent.
    announced: RecordId,
    events: mpsc::Sender<EventResult>,
}

/// Why the follower woke.
enum Wake {
    Commit,
    Poll,
    Gone,
}

impl Follower {
    async fn run(mut self) {
        // The first event says where the stream starts, so a client that
        // loses the connection before any record still resumes from there.
        if !self.send(position(self.cursor)).await {
            return;
        }
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut wake = Wake::Poll;
        loop {
            match self.catch_up().await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    // Handled here, logged once; the client resumes from the
                    // last id it got when it reconnects.
                    tracing::warn!(error = %e, "a record stream stopped: reading records failed");
                    return;
                }
            }
            if matches!(wake, Wake::Poll) && self.cursor > self.announced {
                if !self.send(position(self.cursor)).await {
                    return;
                }
                self.announced = self.cursor;
            }
            wake = tokio::select! {
                () = self.stop.cancelled() => Wake::Gone,
                () = self.events.closed() => Wake::Gone,
                changed = changed(&mut self.commits) => match changed {
                    Ok(()) => Wake::Commit,
                    Err(_) => {
                        self.commits = None;
                        Wake::Poll
                    }
                },
                _ = poll.tick() => Wake::Poll,
            };
            if matches!(wake, Wake::Gone) {
                return;
            }
        }
    }

    /// Sends every matching record above the cursor; `false` when the
    /// stream is over.
    async fn catch_up(&mut self) -> Result<bool, StoreError> {
        loop {
            // Read before the page: every record up to this id is visible
            // to the page's query, so when the page is not full the cursor
            // can move here without missing a record that matches.
            let last = self.store.last_record_id().await?.unwrap_or(0);
            let mut query = self.query.clone();
            query.after_id = Some(self.cursor);
            let page = self.store.records(query).await?;
            for record in &page {
                let event = match Event::default()
                    .event(EVENT_RECORD)
                    .id(RecordCursor(record.id).to_string())
                    .json_data(RecordOut::new(record))
                {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::error!(error = %e, "encoding a stream event failed");
                        return Ok(false);
                    }
                };
                if !self.send(event).await {
                    return Ok(false);
                }
                self.cursor = record.id;
                self.announced = record.id;
            }
            if page.len() < PAGE as usize {
                self.cursor = self.cursor.max(last);
                return Ok(true);
            }
        }
    }

    /// `false` when the client is gone or the server stops.
    async fn send(&self, event: Event) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => false,
            sent = self.events.send(Ok(event)) => sent.is_ok(),
        }
    }
}

/// Waits for a local commit; pends forever once notifications stopped.
async fn changed(
    commits: &mut Option<watch::Receiver<RecordId>>,
) -> Result<(), watch::error::RecvError> {
    match commits {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}

/// A `position` event: its data is a [`Position`](warden_api::records::Position).
fn position(cursor: RecordId) -> Event {
    let cursor = RecordCursor(cursor).to_string();
    // A cursor is `r` and hex digits: nothing to escape.
    let data = format!(r#"{{"cursor":"{cursor}"}}"#);
    Event::default().event(EVENT_POSITION).id(cursor).data(data)
}
