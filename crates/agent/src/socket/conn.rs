//! One client connection: reads frames, spools their records, and (in the
//! acknowledged mode) confirms each frame once it is durable.
//!
//! Frames that are already readable are taken together (up to
//! [`MAX_GROUP_FRAMES`] frames or about [`MAX_GROUP_BYTES`]) and appended to
//! the spool in one call, so they share one fsync; the reader keeps reading
//! while earlier groups are being appended (up to [`MAX_IN_FLIGHT`] groups)
//! and settles frames strictly in order. When the spool applies backpressure
//! the appends wait, the window fills and the reader stops reading the
//! socket. A connection thus holds at most about
//! `MAX_IN_FLIGHT * MAX_GROUP_BYTES` of decoded frames.
//!
//! The protocol's rules: an unknown tag, an over-long length or a frame cut
//! by the end of the stream leave the stream unaligned, so the connection is
//! closed, counted and logged once with the peer; a frame whose payload is
//! not a valid message is skipped and counted; either way other connections
//! are unaffected.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use warden_proto::codec::{DecodedFrame, Frame, FrameCodec, FrameError, MalformedFrame, Tag};
use warden_proto::domain::Peer;
use warden_spool::NewEntry;

use super::ack::{AckWriter, Settled};
use crate::batching::{self, Stamp};
use crate::drops::reason;
use crate::ingest::Ingest;

/// Groups of one connection that may be waiting for the spool at once.
pub const MAX_IN_FLIGHT: usize = 8;
/// Most frames appended in one call.
pub const MAX_GROUP_FRAMES: usize = 256;
/// A group is closed once its payloads reach this size.
pub const MAX_GROUP_BYTES: usize = 1 << 20;

/// What every connection shares.
pub struct ConnShared {
    pub ingest: Ingest,
    pub idle_timeout: Duration,
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The client closed it.
    Closed,
    /// The stream was unaligned or broken.
    FrameError,
    Idle,
    /// The agent's shutdown grace ended.
    Stopped,
}

/// Frames read together: their spool entries, and how each frame settles
/// (`true`: once the entries are durable; `false`: settled already).
#[derive(Default)]
struct Group {
    entries: Vec<NewEntry>,
    settles: Vec<(Settled, bool)>,
    frames: usize,
    bytes: usize,
}

type Pending = FuturesOrdered<BoxFuture<'static, Vec<Settled>>>;

struct Conn {
    shared: Arc<ConnShared>,
    peer: Peer,
    stamp: Stamp,
    /// Session of the last logs frame; client status is attributed to it.
    session: String,
    first: bool,
    write: Option<OwnedWriteHalf>,
    acks: Option<AckWriter>,
    pending: Pending,
    warned_malformed: bool,
    frames: u64,
}

/// Serves one connection until the client closes it, it breaks the
/// protocol, it idles out, or `stop` fires (end of the shutdown grace).
pub async fn serve(
    stream: UnixStream,
    peer: Peer,
    shared: Arc<ConnShared>,
    stop: CancellationToken,
) {
    let metrics = shared.ingest.metrics().clone();
    metrics.connected_clients.inc();
    let (read, write) = stream.into_split();
    let mut conn = Conn {
        stamp: Stamp {
            peer: peer.clone().into(),
            received_at: Timestamp::now(),
        },
        shared,
        peer,
        session: String::new(),
        first: true,
        write: Some(write),
        acks: None,
        pending: FuturesOrdered::new(),
        warned_malformed: false,
        frames: 0,
    };
    let end = conn.run(FramedRead::new(read, FrameCodec), &stop).await;
    metrics.connected_clients.dec();
    let p = &conn.peer;
    match end {
        End::Idle => tracing::info!(
            pid = p.pid, uid = p.uid, exe = %p.exe,
            "closed a connection idle for {:?}", conn.shared.idle_timeout
        ),
        _ => tracing::debug!(pid = p.pid, frames = conn.frames, ?end, "connection ended"),
    }
}

impl Conn {
    async fn run(
        &mut self,
        mut frames: FramedRead<OwnedReadHalf, FrameCodec>,
        stop: &CancellationToken,
    ) -> End {
        let idle_timeout = self.shared.idle_timeout;
        let mut idle = pin!(tokio::time::sleep(idle_timeout));
        let mut end = None;
        loop {
            let reading = end.is_none();
            if !reading && self.pending.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                () = stop.cancelled() => {
                    return End::Stopped;
                }
                Some(settled) = self.pending.next(), if !self.pending.is_empty() => {
                    idle.as_mut().reset(Instant::now() + idle_timeout);
                    self.settle(settled).await;
                }
                () = &mut idle, if reading && self.pending.is_empty() => {
                    if !frames.read_buffer().is_empty() {
                        // A frame started but never finished: lost.
                        self.lost(reason::TRUNCATED_FRAME);
                    }
                    end = Some(End::Idle);
                }
                item = frames.next(), if reading && self.pending.len() < MAX_IN_FLIGHT => {
                    idle.as_mut().reset(Instant::now() + idle_timeout);
                    let mut group = Group::default();
                    let mut item = item;
                    loop {
                        match item {
                            None => end = Some(End::Closed),
                            Some(Err(error)) => {
                                self.broken(&error);
                                end = Some(End::FrameError);
                            }
                            Some(Ok(Err(malformed))) => self.malformed(&malformed, &mut group),
                            Some(Ok(Ok(frame))) => self.frame(frame, &mut group).await,
                        }
                        if end.is_some()
                            || group.frames >= MAX_GROUP_FRAMES
                            || group.bytes >= MAX_GROUP_BYTES
                        {
                            break;
                        }
                        // Take whatever else is readable now into this group.
                        match frames.next().now_or_never() {
                            Some(next) => item = next,
                            None => break,
                        }
                    }
                    self.submit(group);
                }
            }
        }
        if let Some(acks) = self.acks.as_mut() {
            let _ = acks.flush().await;
        }
        end.unwrap_or(End::Closed)
    }

    /// Writes the acknowledgements of settled frames, with any others
    /// already settled, in one write.
    async fn settle(&mut self, settled: Vec<Settled>) {
        let Some(acks) = self.acks.as_mut() else {
            return;
        };
        let mut result = Ok(());
        for s in settled {
            result = result.and(acks.queue(s).await);
        }
        while result.is_ok() {
            match self.pending.next().now_or_never() {
                Some(Some(more)) => {
                    for s in more {
                        result = result.and(acks.queue(s).await);
                    }
                }
                _ => break,
            }
        }
        if let Err(e) = result.and(acks.flush().await) {
            // The client went away; reading will see the end of the stream.
            tracing::debug!(pid = self.peer.pid, "cannot write acknowledgements: {e}");
            self.acks = None;
        }
    }

    fn lost(&self, why: &'static str) {
        self.shared.ingest.metrics().rejected(why);
        self.shared
            .ingest
            .drops()
            .record(Some(&self.peer), why, 0, 1);
    }

    /// The stream is unaligned or broken: count it and log it once.
    fn broken(&self, error: &FrameError) {
        if let FrameError::Io(e) = error
            && e.kind() == std::io::ErrorKind::ConnectionReset
        {
            tracing::debug!(pid = self.peer.pid, "connection reset by the client");
            return;
        }
        let why = match error {
            FrameError::UnknownTag { .. } => reason::UNKNOWN_TAG,
            FrameError::TooLong { .. } => reason::FRAME_TOO_LONG,
            FrameError::Truncated { .. } => reason::TRUNCATED_FRAME,
            FrameError::Io(_) => reason::READ_ERROR,
        };
        self.lost(why);
        let p = &self.peer;
        tracing::warn!(
            pid = p.pid, uid = p.uid, gid = p.gid, comm = %p.comm, exe = %p.exe,
            reason = why,
            "closing a boundary log connection: {error}"
        );
    }

    fn malformed(&mut self, malformed: &MalformedFrame, group: &mut Group) {
        self.first = false;
        self.frames += 1;
        self.lost(reason::MALFORMED_FRAME);
        if !self.warned_malformed {
            self.warned_malformed = true;
            let p = &self.peer;
            tracing::warn!(
                pid = p.pid, uid = p.uid, comm = %p.comm, exe = %p.exe,
                "skipping a malformed frame (further ones on this connection are only counted): {malformed}"
            );
        }
        group.frames += 1;
        group.settles.push((Settled::Malformed, false));
    }

    async fn frame(&mut self, decoded: DecodedFrame, group: &mut Group) {
        self.shared.ingest.metrics().frames_received.inc();
        if std::mem::replace(&mut self.first, false) && decoded.tag == Tag::AckRequest {
            self.start_acks().await;
            return;
        }
        self.frames += 1;
        group.frames += 1;
        group.bytes += decoded.payload_len;
        self.stamp.received_at = Timestamp::now();
        let nothing = Settled::Durable {
            records: 0,
            rejected: 0,
        };
        match decoded.frame {
            Frame::Logs(request) => {
                if !request.session_id.is_empty() && request.session_id != self.session {
                    self.session.clone_from(&request.session_id);
                }
                let rejected = batching::count_without_request(&request);
                if rejected > 0 {
                    self.shared.ingest.metrics().dropped(
                        reason::NO_REQUEST,
                        u64::from(rejected),
                        0,
                    );
                }
                let records = request.logs.len() as u32 - rejected;
                let entries = batching::logs_entries(request, &self.stamp);
                let durable = !entries.is_empty();
                group.entries.extend(entries);
                group
                    .settles
                    .push((Settled::Durable { records, rejected }, durable));
            }
            Frame::Status(status) => {
                self.shared
                    .ingest
                    .metrics()
                    .client_dropped(status.dropped_channel_full, status.dropped_batch_full);
                group
                    .entries
                    .push(batching::status_entry(&self.session, status, &self.stamp));
                group.settles.push((nothing, true));
            }
            Frame::EmptyEnvelope => {
                self.lost(reason::EMPTY_ENVELOPE);
                group.settles.push((nothing, false));
            }
            Frame::AckRequest(_) | Frame::AckAccepted(_) | Frame::FrameAck(_) => {
                // Not a frame a client sends at this point; the stream is
                // still aligned, so it is skipped like a malformed one.
                self.lost(reason::UNEXPECTED_FRAME);
                group.settles.push((Settled::Malformed, false));
            }
        }
    }

    async fn start_acks(&mut self) {
        let Some(write) = self.write.take() else {
            return;
        };
        match AckWriter::accept(write).await {
            Ok(acks) => self.acks = Some(acks),
            Err(e) => tracing::debug!(pid = self.peer.pid, "cannot accept acknowledged mode: {e}"),
        }
    }

    /// Appends a group's entries (one call, one fsync) and queues its
    /// frames' settlements behind the groups before it.
    fn submit(&mut self, group: Group) {
        let Group {
            entries, settles, ..
        } = group;
        if entries.is_empty() {
            // Only acknowledged clients need to hear about frames settled
            // at once; the others never receive a byte.
            if self.acks.is_some() && !settles.is_empty() {
                let settled = settles.into_iter().map(|(s, _)| s).collect();
                self.pending
                    .push_back(futures::future::ready(settled).boxed());
            }
            return;
        }
        let ingest = self.shared.ingest.clone();
        let peer = self.peer.clone();
        self.pending.push_back(
            async move {
                let records: u64 = entries.iter().map(|e| u64::from(e.records)).sum();
                let failed = match ingest.append(entries).await {
                    Ok(_) => false,
                    Err(e) => {
                        let frames = settles.iter().filter(|(_, durable)| *durable).count() as u64;
                        tracing::error!(
                            pid = peer.pid,
                            records,
                            frames,
                            "cannot spool frames: {e}"
                        );
                        ingest.metrics().rejected(reason::SPOOL_ERROR);
                        ingest
                            .drops()
                            .record(Some(&peer), reason::SPOOL_ERROR, records, frames);
                        true
                    }
                };
                settles
                    .into_iter()
                    .map(|(s, durable)| {
                        if durable && failed {
                            Settled::Dropped
                        } else {
                            s
                        }
                    })
                    .collect()
            }
            .boxed(),
        );
    }
}
