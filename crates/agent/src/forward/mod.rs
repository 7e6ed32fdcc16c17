//! The forwarder: ships spooled batches to the control plane and deletes
//! (acks in the spool) only what the control plane confirmed committing;
//! and [`report_drops`]: ships the spool's drop ledger.
//!
//! It reads the spool in order and packs consecutive batches into one
//! `ReportBoundaryLogs` call of at most [`MAX_RECORDS_PER_RPC`] records and
//! about [`MAX_RPC_BYTES`]. Each batch is sent as the bytes it was spooled
//! with ([`crate::entry`]): nothing is decoded or re-encoded on the way.
//! A full call's worth goes out at once (up to [`MAX_IN_FLIGHT_RPCS`] calls
//! in flight: at saturation, calls are full and pipelined). Otherwise a
//! call waits for company: while none is in flight, until its oldest batch
//! has waited the agent's forward delay ([`Forwarder::gather`], a few
//! milliseconds, counted from when the agent read the batch from its
//! socket, so the spool's group commit is part of the wait rather than
//! added to it); while calls are in flight, until one comes back and that
//! delay is over, or the oldest batch has waited [`MAX_CALL_DELAY`]. Each
//! call costs both sides far more than its records (a gRPC round trip, a
//! commit with its fsync on the control plane), so at a low steady rate
//! the delay, not the speed of the previous call, sets how many calls there
//! are: a fast control plane is not made to commit one frame at a time.
//!
//! When a call fails (the link is down, or the acknowledgement was lost),
//! every call in flight is abandoned and, after a capped exponential backoff
//! with jitter, the forwarder starts over from the oldest batch still in the
//! spool: the same bytes, so the same batch ids. After a restart the spool
//! hands back everything unacknowledged likewise. The control plane
//! deduplicates by batch id, so a re-send after a lost acknowledgement is
//! harmless. Starting over from the spool (rather than holding batches in
//! memory while waiting) also means a batch the spool dropped under its
//! drop_oldest policy is not sent after all: it is reported from the drop
//! ledger instead, and the control plane counts it only if it never
//! committed it (so a batch dropped while a call carrying it was on its
//! way is either stored or reported, never both).
//!
//! A call the control plane refuses as invalid is split into single-batch
//! calls; a single batch it still refuses is moved to `<data-dir>/rejected/`
//! (kept, never silently deleted), counted as `rejected_by_control_plane`
//! with its session and sequence numbers, and taken out of the spool, so one
//! bad batch cannot block the rest.

mod ledger;

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warden_proto::domain::{DropReason, SequenceRange};
use warden_proto::wire::agentapi;
use warden_proto::wire::spool::entry_header::Kind;
use warden_spool::{Entry, EntryId, Spool};

pub use ledger::report_drops;

use crate::batching::MAX_RECORDS_PER_RPC;
use crate::control::{CallError, ControlPlane, RawBatches, Retry, RetryPolicy};
use crate::drops::{DropReporter, Loss};
use crate::entry::{self, Parsed};
use crate::files;
use crate::metrics::Metrics;

/// Most calls in flight at once. The control plane commits the calls waiting
/// for its writer as one group, so at saturation a wider window means more
/// records per commit (docs/benchmarks.md has the measurements).
pub const MAX_IN_FLIGHT_RPCS: usize = 8;
/// Target size of one call (the control plane's message limit is larger;
/// one batch is at most about 1 MiB, see `batching`).
pub const MAX_RPC_BYTES: usize = 2 * 1024 * 1024;
/// Most batches in one call (status and drop reports carry no records).
pub const MAX_BATCHES_PER_RPC: usize = 1000;
/// Longest a spooled batch waits for a call in flight to come back before
/// it goes in a call of its own.
pub const MAX_CALL_DELAY: Duration = Duration::from_millis(10);

/// Everything a delivery needs; cheap to clone.
#[derive(Clone)]
pub struct Forwarder {
    /// Where the batches are.
    pub spool: Spool,
    /// Where they go.
    pub control: ControlPlane,
    /// The agent's metrics.
    pub metrics: Arc<Metrics>,
    /// Where refused batches are counted.
    pub drops: DropReporter,
    /// How long to wait between attempts.
    pub retry: RetryPolicy,
    /// Where batches the control plane refuses are kept.
    pub rejected_dir: PathBuf,
    /// How long a batch may wait for others to share a call while no call
    /// is in flight (zero: a call goes at once).
    pub gather: Duration,
}

/// One spooled batch on its way.
struct Item {
    id: EntryId,
    records: u32,
    /// The whole entry (its header tells whose records these are).
    data: Bytes,
    parsed: Parsed,
}

/// What the buffer holds, against the limits of one call.
#[derive(Clone, Copy, Default)]
struct Fill {
    records: usize,
    bytes: usize,
    batches: usize,
}

impl Fill {
    fn of(buffer: &VecDeque<Entry>) -> Fill {
        buffer.iter().fold(Fill::default(), |f, e| Fill {
            records: f.records + e.records as usize,
            bytes: f.bytes + e.data.len(),
            batches: f.batches + 1,
        })
    }

    /// At least a full call's worth.
    fn full(self) -> bool {
        self.records >= MAX_RECORDS_PER_RPC
            || self.bytes >= MAX_RPC_BYTES
            || self.batches >= MAX_BATCHES_PER_RPC
    }
}

impl Forwarder {
    /// Forwards until `stop`; in-flight calls are abandoned then (their
    /// batches stay spooled and are sent again at the next start).
    pub async fn run(self, stop: CancellationToken) {
        let mut cursor: Option<EntryId> = None;
        let mut buffer: VecDeque<Entry> = VecDeque::new();
        let mut calls: JoinSet<Result<(), CallError>> = JoinSet::new();
        let mut retry = Retry::new(self.retry);
        // Since when the oldest batch in the buffer waits for company.
        let mut waiting_since: Option<Instant> = None;
        loop {
            let fill = Fill::of(&buffer);
            let next = next_call(fill, calls.len(), self.gather);
            let room = !matches!(next, NextCall::Wait);
            let send = matches!(next, NextCall::Now);
            let read = !fill.full();
            let overdue = match (next, waiting_since) {
                (NextCall::After(delay), Some(since)) => since + delay,
                _ => Instant::now(),
            };
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some(done) = calls.join_next(), if !calls.is_empty() => {
                    let error = match done {
                        Ok(Ok(())) => {
                            retry.reset();
                            continue;
                        }
                        Ok(Err(error)) => error,
                        Err(e) => {
                            tracing::error!(error = %e, "a delivery task failed");
                            CallError::Unavailable { code: tonic::Code::Internal, message: e.to_string() }
                        }
                    };
                    // The link is down: abandon every call in flight, wait,
                    // then start over from the oldest unacknowledged batch.
                    // Re-reading (rather than holding batches in memory)
                    // sends exactly what is still spooled, with the ids it
                    // was spooled with.
                    self.metrics.forward_failures.inc();
                    calls.abort_all();
                    while calls.join_next().await.is_some() {}
                    buffer.clear();
                    waiting_since = None;
                    cursor = None;
                    let delay = retry.delay_after(&error);
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                () = std::future::ready(()), if send => {
                    self.send_call(&mut buffer, &mut calls);
                    waiting_since = oldest_waiting_since(&buffer, self.gather);
                }
                () = tokio::time::sleep_until(overdue), if room && !send && waiting_since.is_some() => {
                    self.send_call(&mut buffer, &mut calls);
                    waiting_since = oldest_waiting_since(&buffer, self.gather);
                }
                read = self.spool.read_after(
                    cursor,
                    MAX_BATCHES_PER_RPC - fill.batches,
                    MAX_RPC_BYTES.saturating_sub(fill.bytes),
                ), if read => {
                    match read {
                        Ok(entries) => {
                            cursor = entries.last().map(|e| e.id).or(cursor);
                            let was_empty = buffer.is_empty();
                            buffer.extend(entries);
                            if was_empty {
                                waiting_since = oldest_waiting_since(&buffer, self.gather);
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %crate::chain::display(&e), "reading the spool");
                            tokio::select! {
                                () = stop.cancelled() => break,
                                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            }
                        }
                    }
                }
            }
        }
        calls.abort_all();
        while calls.join_next().await.is_some() {}
    }

    /// Starts a call with the next batches of `buffer`.
    fn send_call(&self, buffer: &mut VecDeque<Entry>, calls: &mut JoinSet<Result<(), CallError>>) {
        let call = take_call(buffer);
        let this = self.clone();
        calls.spawn(async move { this.deliver(call).await });
    }

    /// Delivers one call's batches. A failure the control plane may recover
    /// from is returned (the caller retries from the spool); batches it
    /// refuses as invalid are split and, alone, set aside.
    async fn deliver(&self, entries: Vec<Entry>) -> Result<(), CallError> {
        let mut items = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry::parse(&entry.data) {
                Ok(parsed) => items.push(Item {
                    id: entry.id,
                    records: entry.records,
                    data: entry.data,
                    parsed,
                }),
                // The spool checks every entry's checksum, so this is a bug
                // of the writer; keep the bytes aside and carry on.
                Err(e) => {
                    let name = format!("entry-{}", entry.id.0);
                    let why = format!("undecodable spool entry: {e}");
                    self.set_aside(&name, &entry.data, &entry, &why).await;
                }
            }
        }
        let mut queue = vec![items];
        while let Some(mut group) = queue.pop() {
            if group.is_empty() {
                continue;
            }
            let batches = RawBatches(group.iter().map(|item| item.parsed.batch.clone()).collect());
            let started = Instant::now();
            match self.control.report(batches).await {
                Ok(response) => {
                    self.metrics
                        .rpc_duration
                        .observe(started.elapsed().as_secs_f64());
                    let unconfirmed = self.confirmed(group, response).await;
                    if unconfirmed > 0 {
                        return Err(CallError::Unavailable {
                            code: tonic::Code::Internal,
                            message: format!(
                                "the control plane answered without confirming {unconfirmed} batches"
                            ),
                        });
                    }
                }
                Err(CallError::Rejected { code, message }) if group.len() > 1 => {
                    tracing::warn!(
                        batches = group.len(),
                        "the control plane refused a call ({code:?}: {message}); sending its batches one by one"
                    );
                    queue.extend(group.drain(..).rev().map(|item| vec![item]));
                }
                Err(CallError::Rejected { code, message }) => {
                    let item = &group[0];
                    let why = format!("{code:?}: {message}");
                    let name = String::from_utf8_lossy(&item.parsed.batch_id).into_owned();
                    let entry = Entry {
                        id: item.id,
                        records: item.records,
                        data: item.data.clone(),
                    };
                    // The file holds the batch as it was sent.
                    self.set_aside(&name, &item.parsed.batch, &entry, &why)
                        .await;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Acks the batches the response names; returns how many it did not.
    async fn confirmed(
        &self,
        group: Vec<Item>,
        response: agentapi::ReportBoundaryLogsResponse,
    ) -> usize {
        let results: HashSet<&[u8]> = response
            .results
            .iter()
            .map(|r| r.batch_id.as_bytes())
            .collect();
        let now = jiff::Timestamp::now();
        let (done, unconfirmed): (Vec<Item>, Vec<Item>) = group
            .into_iter()
            .partition(|item| results.contains(&item.parsed.batch_id[..]));
        if done.is_empty() {
            return unconfirmed.len();
        }
        let ids: Vec<EntryId> = done.iter().map(|item| item.id).collect();
        if let Err(e) = self.spool.ack(&ids).await {
            // They will be sent again; the control plane deduplicates.
            tracing::error!(
                error = %crate::chain::display(&e),
                "acknowledging delivered batches in the spool"
            );
            return unconfirmed.len() + done.len();
        }
        self.metrics.batches_forwarded.inc_by(done.len() as u64);
        let records: u64 = done.iter().map(|item| u64::from(item.records)).sum();
        self.metrics.records_forwarded.inc_by(records);
        for item in &done {
            if let Some(received) = item.parsed.received_at {
                let latency = now.duration_since(received).as_secs_f64();
                self.metrics.forward_latency.observe(latency.max(0.0));
            }
        }
        unconfirmed.len()
    }

    /// Keeps a batch the control plane cannot take in `rejected/` and takes
    /// it out of the spool, counting its records as dropped (with their
    /// session and sequence numbers, when the entry tells them).
    async fn set_aside(&self, name: &str, data: &Bytes, entry: &Entry, why: &str) {
        let path = self.rejected_dir.join(format!("{name}.binpb"));
        let (dir, file, bytes) = (self.rejected_dir.clone(), path.clone(), data.clone());
        let written =
            tokio::task::spawn_blocking(move || files::write_private(&dir, &file, &bytes))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
        if let Err(e) = written {
            // Not kept anywhere else, so it stays in the spool (and will
            // be tried again at the next start).
            tracing::error!(path = %path.display(), error = %e, "cannot set aside a refused batch, keeping it spooled");
            return;
        }
        tracing::error!(
            path = %path.display(),
            records = entry.records,
            "the control plane refused a batch ({why}); it is kept in that file and counted as dropped"
        );
        let header = entry::header(&entry.data).filter(|h| h.kind() == Kind::Logs);
        let ranges: Vec<SequenceRange> = header
            .as_ref()
            .map(|h| h.sequence_ranges.iter().map(|r| (*r).into()).collect())
            .unwrap_or_default();
        self.drops.record(
            DropReason::RejectedByControlPlane,
            Loss {
                peer: None,
                session_id: header.as_ref().map_or("", |h| h.session_id.as_str()),
                ranges: &ranges,
                records: u64::from(entry.records),
                frames: 1,
            },
        );
        if let Err(e) = self.spool.ack(&[entry.id]).await {
            tracing::error!(error = %crate::chain::display(&e), "removing a refused batch from the spool");
        }
    }
}

/// When the next call goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NextCall {
    /// Nothing to send, or the window is full.
    Wait,
    /// A full call's worth is buffered, or nothing waits for company.
    Now,
    /// Once the oldest buffered batch has waited this long (unless a full
    /// call's worth, or a call coming back, says otherwise first).
    After(Duration),
}

/// Whether a call of what `fill` holds goes now, given the calls in flight
/// and how long a batch may wait for company while none is (`gather`).
fn next_call(fill: Fill, in_flight: usize, gather: Duration) -> NextCall {
    if fill.batches == 0 || in_flight >= MAX_IN_FLIGHT_RPCS {
        NextCall::Wait
    } else if fill.full() || (in_flight == 0 && gather.is_zero()) {
        NextCall::Now
    } else if in_flight == 0 {
        NextCall::After(gather)
    } else {
        // Calls in flight: a returning one usually takes the batch along.
        NextCall::After(MAX_CALL_DELAY.max(gather))
    }
}

/// Since when the oldest batch of `buffer` waits for company: since the
/// agent read it from its socket, as its entry says, so that the time it
/// spent in the spool's group commit counts toward the forward delay
/// instead of adding to it. Never longer ago than the longest wait there is
/// (a batch spooled before a restart, or a clock step, goes at once rather
/// than wait again), never later than now.
fn oldest_waiting_since(buffer: &VecDeque<Entry>, gather: Duration) -> Option<Instant> {
    let oldest = buffer.front()?;
    let now = Instant::now();
    let received = entry::parse(&oldest.data).ok().and_then(|p| p.received_at);
    Some(waiting_since(now, jiff::Timestamp::now(), received, gather))
}

/// [`oldest_waiting_since`]'s arithmetic: `now` less the batch's age, the
/// age bounded by `0..=` the longest wait.
fn waiting_since(
    now: Instant,
    wall_now: jiff::Timestamp,
    received: Option<jiff::Timestamp>,
    gather: Duration,
) -> Instant {
    let longest = MAX_CALL_DELAY.max(gather);
    let age = received
        .and_then(|at| Duration::try_from(wall_now.duration_since(at)).ok())
        .unwrap_or(Duration::ZERO)
        .min(longest);
    now.checked_sub(age).unwrap_or(now)
}

/// Takes the next call's entries from the front of `buffer`: at least one,
/// then as many as fit the record, byte and batch limits.
fn take_call(buffer: &mut VecDeque<Entry>) -> Vec<Entry> {
    let mut call = Vec::new();
    let (mut records, mut bytes) = (0usize, 0usize);
    while let Some(next) = buffer.front() {
        let (r, b) = (next.records as usize, next.data.len());
        let fits = records + r <= MAX_RECORDS_PER_RPC
            && bytes + b <= MAX_RPC_BYTES
            && call.len() < MAX_BATCHES_PER_RPC;
        if !call.is_empty() && !fits {
            break;
        }
        records += r;
        bytes += b;
        call.extend(buffer.pop_front());
    }
    call
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, records: u32, len: usize) -> Entry {
        Entry {
            id: EntryId(id),
            records,
            data: Bytes::from(vec![0u8; len]),
        }
    }

    #[test]
    fn a_call_waits_for_company_only_while_it_is_not_full() {
        let gather = Duration::from_millis(5);
        let some = Fill {
            records: 10,
            bytes: 2000,
            batches: 2,
        };
        let full = Fill {
            records: MAX_RECORDS_PER_RPC,
            ..some
        };
        assert_eq!(next_call(Fill::default(), 0, gather), NextCall::Wait);
        assert_eq!(next_call(some, 0, gather), NextCall::After(gather));
        assert_eq!(next_call(full, 0, gather), NextCall::Now);
        assert_eq!(next_call(full, 3, gather), NextCall::Now, "pipelined");
        assert_eq!(
            next_call(full, MAX_IN_FLIGHT_RPCS, gather),
            NextCall::Wait,
            "the window is full"
        );
        assert_eq!(next_call(some, 0, Duration::ZERO), NextCall::Now);
        assert_eq!(
            next_call(some, 1, Duration::ZERO),
            NextCall::After(MAX_CALL_DELAY)
        );
        let long = Duration::from_millis(50);
        assert_eq!(next_call(some, 1, long), NextCall::After(long));
        assert_eq!(next_call(some, 1, gather), NextCall::After(MAX_CALL_DELAY));
    }

    #[test]
    fn a_batch_waits_for_company_from_when_the_agent_read_it() {
        let gather = Duration::from_millis(8);
        let longest = MAX_CALL_DELAY.max(gather);
        let (now, wall) = (Instant::now(), jiff::Timestamp::now());
        let ago = |ms: i64| Some(wall - jiff::SignedDuration::from_millis(ms));
        // Its time in the spool counts toward the delay.
        assert_eq!(
            waiting_since(now, wall, ago(3), gather),
            now - Duration::from_millis(3)
        );
        // Unknown, or a clock that stepped back: from now.
        assert_eq!(waiting_since(now, wall, None, gather), now);
        assert_eq!(waiting_since(now, wall, ago(-50), gather), now);
        // Long ago (spooled before a restart): no more waiting than the
        // longest wait there is.
        assert_eq!(waiting_since(now, wall, ago(60_000), gather), now - longest);
    }

    #[test]
    fn the_oldest_batch_in_the_buffer_tells_its_read_time() {
        let gather = Duration::from_millis(8);
        let read_at = jiff::Timestamp::now() - jiff::SignedDuration::from_millis(5);
        let data = entry::write_batch(
            Kind::Status,
            agentapi::Batch::default(),
            None,
            read_at,
            entry::Attribution {
                session_id: "s",
                ranges: &[],
            },
        );
        let buffer: VecDeque<Entry> = [Entry {
            id: EntryId(1),
            records: 0,
            data,
        }]
        .into();
        let since = oldest_waiting_since(&buffer, gather).unwrap();
        // At least the 5 ms it already waited, and no more than the longest
        // wait (the test may be slow, never fast).
        let waited = since.elapsed();
        assert!(waited >= Duration::from_millis(5), "{waited:?}");
        assert!(waited <= MAX_CALL_DELAY.max(gather) + Duration::from_secs(5));
        assert_eq!(oldest_waiting_since(&VecDeque::new(), gather), None);
    }

    #[test]
    fn calls_pack_consecutive_batches_within_the_limits() {
        let mut buffer: VecDeque<Entry> = (0..25).map(|i| entry(i, 100, 10)).collect();
        assert!(Fill::of(&buffer).full());
        let call = take_call(&mut buffer);
        assert_eq!(call.len(), 10, "1000 records");
        assert_eq!(call[0].id, EntryId(0));
        assert_eq!(call[9].id, EntryId(9));
        assert_eq!(take_call(&mut buffer).len(), 10);
        assert!(!Fill::of(&buffer).full());
        assert_eq!(take_call(&mut buffer).len(), 5);
        assert!(take_call(&mut buffer).is_empty());

        let mut big: VecDeque<Entry> = [entry(0, 1, MAX_RPC_BYTES), entry(1, 1, 10)].into();
        assert_eq!(
            take_call(&mut big).len(),
            1,
            "an oversized batch goes alone"
        );
        let mut reports: VecDeque<Entry> = (0..1500).map(|i| entry(i, 0, 10)).collect();
        assert_eq!(take_call(&mut reports).len(), MAX_BATCHES_PER_RPC);
    }
}
