//! One client connection: reads frames, spools their records, and (in the
//! acknowledged mode) confirms each frame once it is durable.
//!
//! Each frame is read once ([`warden_proto::scan`]: validated, counted,
//! its session and sequence numbers noted, nothing allocated per record)
//! and spooled as the bytes the client sent, behind a small header
//! ([`crate::entry`]). Frames that are already readable are taken together
//! (up to [`MAX_GROUP_FRAMES`] frames or about [`MAX_GROUP_BYTES`]) and
//! appended to the spool in one call, so they share one fsync; the reader
//! keeps reading while earlier groups are being appended (up to
//! [`MAX_IN_FLIGHT`] groups) and settles frames strictly in order. When the
//! spool applies backpressure the appends wait, the window fills and the
//! reader stops reading the socket. A connection thus holds at most about
//! `MAX_IN_FLIGHT * MAX_GROUP_BYTES` of frames, large frames (tag 0) within
//! the agent's shared [`FrameBudget`].
//!
//! The protocol's rules: an unknown tag, an over-long length or a frame cut
//! by the end of the stream leave the stream unaligned, so the connection is
//! closed, counted and logged once with the peer; a frame whose payload is
//! not a valid message is skipped and counted; either way other connections
//! are unaffected.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use prost::Message;
use tokio::net::UnixStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warden_proto::codec::{Frame, FrameError, Tag, decode_payload};
use warden_proto::domain::{DropReason, Peer, SequenceRange};
use warden_proto::quote::quote;
use warden_proto::scan;
use warden_proto::socket::{QuietStream, WriteHalf};
use warden_proto::wire::spool::entry_header::Kind;
use warden_proto::wire::{BoundaryStatus, ReportBoundaryLogsRequest, agentapi};
use warden_spool::NewEntry;

use super::ack::{AckWriter, Settled};
use super::budget::{Charge, FrameBudget};
use super::reader::{FrameReader, RawFrame};
use crate::batching;
use crate::drops::Loss;
use crate::entry::{self, Attribution, PeerBytes, Stamp};
use crate::ingest::Ingest;

/// Groups of one connection that may be waiting for the spool at once.
pub const MAX_IN_FLIGHT: usize = 8;
/// Most frames appended in one call.
pub const MAX_GROUP_FRAMES: usize = 256;
/// A group is closed once its payloads reach this size.
pub const MAX_GROUP_BYTES: usize = 1 << 20;

/// What every connection shares.
pub struct ConnShared {
    /// The way into the spool.
    pub ingest: Ingest,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
    /// What large frames of all connections may hold.
    pub budget: FrameBudget,
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

/// Frames read together: their spool entries, how each frame settles
/// (`true`: once the entries are durable; `false`: settled already), and
/// the budget their large frames hold.
#[derive(Default)]
struct Group {
    entries: Vec<NewEntry>,
    settles: Vec<(Settled, bool)>,
    charges: Vec<Charge>,
    frames: usize,
    bytes: usize,
}

type Pending = FuturesOrdered<BoxFuture<'static, Vec<Settled>>>;

struct Conn {
    shared: Arc<ConnShared>,
    peer: Peer,
    /// The peer's `SocketPeer` encoding, written into every batch.
    peer_bytes: PeerBytes,
    /// Session of the last logs frame; client status is attributed to it.
    session: String,
    first: bool,
    write: Option<WriteHalf>,
    acks: Option<AckWriter>,
    pending: Pending,
    warned_malformed: bool,
    frames: u64,
    /// Reused for each frame's sequence numbers.
    sequence_numbers: Vec<i32>,
}

/// Serves one connection until the client closes it, it breaks the
/// protocol, it idles out, or `stop` fires (end of the shutdown grace).
pub async fn serve(
    stream: UnixStream,
    peer: Peer,
    shared: Arc<ConnShared>,
    stop: CancellationToken,
) {
    let stream = match QuietStream::from_tokio(stream) {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(pid = peer.pid, error = %e, "cannot take over a boundary log connection");
            return;
        }
    };
    let metrics = shared.ingest.metrics().clone();
    metrics.connected_clients.inc();
    let (read, write) = stream.into_split();
    let reader = FrameReader::new(read, shared.budget.clone());
    let mut conn = Conn {
        peer_bytes: PeerBytes::new(&peer.clone().into()),
        shared,
        peer,
        session: String::new(),
        first: true,
        write: Some(write),
        acks: None,
        pending: FuturesOrdered::new(),
        warned_malformed: false,
        frames: 0,
        sequence_numbers: Vec::new(),
    };
    let end = conn.run(reader, &stop).await;
    metrics.connected_clients.dec();
    let p = &conn.peer;
    match end {
        End::Idle => tracing::info!(
            pid = p.pid, uid = p.uid, exe = %quote(&p.exe),
            "closed a connection idle for {:?}", conn.shared.idle_timeout
        ),
        _ => tracing::debug!(pid = p.pid, frames = conn.frames, ?end, "connection ended"),
    }
}

impl Conn {
    async fn run(&mut self, mut reader: FrameReader, stop: &CancellationToken) -> End {
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
                    if reader.in_frame() {
                        // A frame started but never finished: lost.
                        self.lost(DropReason::IdleTimeout);
                    }
                    end = Some(End::Idle);
                }
                item = reader.next(), if reading && self.pending.len() < MAX_IN_FLIGHT => {
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
                            Some(Ok(frame)) => self.frame(frame, &mut group).await,
                        }
                        if end.is_some()
                            || group.frames >= MAX_GROUP_FRAMES
                            || group.bytes >= MAX_GROUP_BYTES
                        {
                            break;
                        }
                        // Take whatever else is readable now into this group.
                        match reader.next().now_or_never() {
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

    /// A frame (or the connection) lost for `why`, records unknown.
    fn lost(&self, why: DropReason) {
        self.shared.ingest.metrics().rejected(why);
        self.shared
            .ingest
            .drops()
            .record(why, Loss::frames(Some(&self.peer), 1));
    }

    /// The stream is unaligned or broken: count it and log it once.
    fn broken(&self, error: &FrameError) {
        if let FrameError::Io(e) = error
            && e.kind() == std::io::ErrorKind::ConnectionReset
        {
            tracing::debug!(pid = self.peer.pid, "connection reset by the client");
            return;
        }
        let why = error.drop_reason();
        self.lost(why);
        let p = &self.peer;
        tracing::warn!(
            pid = p.pid, uid = p.uid, gid = p.gid, comm = %quote(&p.comm), exe = %quote(&p.exe),
            reason = %why,
            "closing a boundary log connection: {}", crate::chain::display(error)
        );
    }

    fn malformed(&mut self, malformed: &(dyn std::error::Error + 'static), group: &mut Group) {
        self.lost(DropReason::MalformedFrame);
        if !self.warned_malformed {
            self.warned_malformed = true;
            let p = &self.peer;
            tracing::warn!(
                pid = p.pid, uid = p.uid, comm = %quote(&p.comm), exe = %quote(&p.exe),
                "skipping a malformed frame (further ones on this connection are only counted): {}",
                crate::chain::display(malformed)
            );
        }
        group.settles.push((Settled::Malformed, false));
    }

    async fn frame(&mut self, frame: RawFrame, group: &mut Group) {
        self.shared.ingest.metrics().frames_received.inc();
        let RawFrame {
            tag,
            payload,
            charge,
        } = frame;
        if std::mem::replace(&mut self.first, false) && tag == Tag::AckRequest {
            match decode_payload(tag, payload) {
                Ok(_) => self.start_acks().await,
                Err(malformed) => {
                    // Not in acknowledged mode: nothing to settle.
                    self.frames += 1;
                    self.malformed(&malformed, &mut Group::default());
                }
            }
            return;
        }
        self.frames += 1;
        group.frames += 1;
        group.bytes += payload.len();
        group.charges.push(charge);
        match tag {
            Tag::Legacy | Tag::V1 => self.logs(payload, group),
            Tag::Envelope => match scan::envelope_logs(&payload) {
                Some(logs) => {
                    let logs = payload.slice_ref(logs);
                    self.logs(logs, group);
                }
                // Status, an empty envelope, or an unusual one.
                None => self.envelope(tag, payload, group),
            },
            Tag::AckRequest | Tag::AckAccepted | Tag::FrameAck => {
                match decode_payload(tag, payload) {
                    // Not a frame a client sends at this point; the stream is
                    // still aligned, so it is skipped like a malformed one.
                    Ok(_) => {
                        self.lost(DropReason::UnexpectedFrame);
                        group.settles.push((Settled::Malformed, false));
                    }
                    Err(malformed) => self.malformed(&malformed, group),
                }
            }
        }
    }

    /// A client's records: checked, counted and spooled as they came.
    fn logs(&mut self, logs: Bytes, group: &mut Group) {
        self.sequence_numbers.clear();
        let scan = match scan::scan_logs(&logs, &mut self.sequence_numbers) {
            Ok(scan) => scan,
            Err(e) => return self.malformed(&e, group),
        };
        if !scan.session_id.is_empty() && scan.session_id != self.session {
            self.session.clear();
            self.session.push_str(scan.session_id);
        }
        let rejected = scan.without_request;
        if rejected > 0 {
            self.shared
                .ingest
                .metrics()
                .dropped(DropReason::NoRequest, u64::from(rejected), 0);
        }
        let settled = Settled::Durable {
            records: scan.records - rejected,
            rejected,
        };
        if scan.records == 0 {
            group.settles.push((settled, false));
            return;
        }
        let stamp = Stamp {
            peer: &self.peer_bytes,
            received_at: Timestamp::now(),
        };
        if batching::needs_split(scan.records, logs.len()) {
            // The rare path: decode, split, re-encode.
            match ReportBoundaryLogsRequest::decode(logs.clone()) {
                Ok(request) => {
                    for part in batching::split(request) {
                        let mut numbers: Vec<i32> =
                            part.logs.iter().map(|l| l.sequence_number).collect();
                        let ranges = SequenceRange::from_numbers(&mut numbers);
                        let mut data = Vec::new();
                        entry::write_logs(
                            &mut data,
                            &part.encode_to_vec(),
                            &stamp,
                            Attribution {
                                session_id: &part.session_id,
                                ranges: &ranges,
                            },
                        );
                        group.entries.push(NewEntry {
                            records: part.logs.len() as u32,
                            data: Bytes::from(data),
                        });
                    }
                }
                Err(e) => return self.malformed(&e, group),
            }
        } else {
            let ranges = SequenceRange::from_numbers(&mut self.sequence_numbers);
            let mut data = Vec::new();
            entry::write_logs(
                &mut data,
                &logs,
                &stamp,
                Attribution {
                    session_id: scan.session_id,
                    ranges: &ranges,
                },
            );
            group.entries.push(NewEntry {
                records: scan.records,
                data: Bytes::from(data),
            });
        }
        group.settles.push((settled, true));
    }

    /// A tag-2 envelope that is not just records: decoded the usual way.
    fn envelope(&mut self, tag: Tag, payload: Bytes, group: &mut Group) {
        match decode_payload(tag, payload) {
            Ok(decoded) => match decoded.frame {
                Frame::Logs(request) => {
                    let bytes = Bytes::from(request.encode_to_vec());
                    self.logs(bytes, group);
                }
                Frame::Status(status) => self.status(status, group),
                Frame::EmptyEnvelope => {
                    self.lost(DropReason::EmptyEnvelope);
                    group.settles.push((
                        Settled::Durable {
                            records: 0,
                            rejected: 0,
                        },
                        false,
                    ));
                }
                _ => unreachable!("an envelope holds logs or status"),
            },
            Err(malformed) => self.malformed(&malformed, group),
        }
    }

    /// A client's status report, attributed to the connection's session.
    fn status(&mut self, status: BoundaryStatus, group: &mut Group) {
        self.shared
            .ingest
            .metrics()
            .client_dropped(status.dropped_channel_full, status.dropped_batch_full);
        let batch = agentapi::Batch {
            client_status: vec![agentapi::ClientStatus {
                session_id: self.session.clone(),
                status: Some(status),
            }],
            ..Default::default()
        };
        let data = entry::write_batch(
            Kind::Status,
            batch,
            Some(self.peer.clone().into()),
            Timestamp::now(),
            Attribution {
                session_id: &self.session,
                ranges: &[],
            },
        );
        group.entries.push(NewEntry { records: 0, data });
        group.settles.push((
            Settled::Durable {
                records: 0,
                rejected: 0,
            },
            true,
        ));
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
    /// frames' settlements behind the groups before it. The group's budget
    /// is given back once it is settled.
    fn submit(&mut self, group: Group) {
        let Group {
            entries,
            settles,
            charges,
            ..
        } = group;
        if entries.is_empty() {
            drop(charges);
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
                // Kept for the error path: which sessions and records were lost.
                let kept: Vec<(u32, Bytes)> = entries
                    .iter()
                    .map(|e| (e.records, e.data.clone()))
                    .collect();
                let records: u64 = entries.iter().map(|e| u64::from(e.records)).sum();
                let failed = match ingest.append(entries).await {
                    Ok(_) => false,
                    Err(e) => {
                        let frames = settles.iter().filter(|(_, durable)| *durable).count() as u64;
                        tracing::error!(
                            pid = peer.pid,
                            records,
                            frames,
                            error = %crate::chain::display(&e),
                            "cannot spool frames"
                        );
                        ingest.metrics().rejected(DropReason::SpoolError);
                        report_spool_error(&ingest, &peer, &kept);
                        true
                    }
                };
                drop(charges);
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

/// Counts entries the spool could not write, with their sessions and
/// sequence numbers.
fn report_spool_error(ingest: &Ingest, peer: &Peer, entries: &[(u32, Bytes)]) {
    for (records, data) in entries {
        let header = entry::header(data).filter(|h| h.kind() == Kind::Logs);
        let ranges: Vec<SequenceRange> = header
            .as_ref()
            .map(|h| h.sequence_ranges.iter().map(|r| (*r).into()).collect())
            .unwrap_or_default();
        ingest.drops().record(
            DropReason::SpoolError,
            Loss {
                peer: Some(peer),
                session_id: header.as_ref().map_or("", |h| h.session_id.as_str()),
                ranges: &ranges,
                records: u64::from(*records),
                frames: 1,
            },
        );
    }
}
