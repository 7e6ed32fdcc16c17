//! The forwarder: ships spooled batches to the control plane and deletes
//! (acks in the spool) only what the control plane confirmed committing.
//!
//! It reads the spool in order and packs consecutive batches into one
//! `ReportBoundaryLogs` call of at most [`MAX_RECORDS_PER_RPC`] records and
//! about [`MAX_RPC_BYTES`], with up to [`MAX_IN_FLIGHT_RPCS`] calls in flight.
//! When a call fails (the link is down, or the acknowledgement was lost),
//! every call in flight is abandoned and, after a capped exponential backoff
//! with jitter, the forwarder starts over from the oldest batch still in the
//! spool: the same bytes, so the same batch ids. After a restart the spool
//! hands back everything unacknowledged likewise. The control plane
//! deduplicates by batch id, so a re-send after a lost acknowledgement is
//! harmless. Starting over from the spool (rather than holding batches in
//! memory while waiting) also means a batch the spool dropped under its
//! drop_oldest policy is not sent after all, so drop counts stay exact.
//!
//! A call the control plane refuses as invalid is split into single-batch
//! calls; a single batch it still refuses is moved to `<data-dir>/rejected/`
//! (kept, never silently deleted), counted as `rejected_by_control_plane`
//! and taken out of the spool, so one bad batch cannot block the rest.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warden_proto::domain::timestamp_from_wire;
use warden_proto::wire::agentapi::{self, Batch};
use warden_spool::{Entry, EntryId, Spool};

use crate::batching::MAX_RECORDS_PER_RPC;
use crate::control::{CallError, ControlPlane, Retry, RetryPolicy};
use crate::drops::{DropReporter, reason};
use crate::metrics::Metrics;

/// Calls in flight at once. The control plane commits the calls waiting for
/// its writer as one group, so a wider window means more records per commit:
/// with 8 clients into SQLite, 4 calls gave 97–101k records/s end to end and
/// 8 gave 110–119k (`warden bench --records 800000`, docs/benchmarks.md);
/// 16 added nothing more.
pub const MAX_IN_FLIGHT_RPCS: usize = 8;
/// Target size of one call (the control plane's message limit is larger;
/// one batch is at most about 1 MiB, see `batching`).
pub const MAX_RPC_BYTES: usize = 2 * 1024 * 1024;
/// Most batches in one call (status and drop reports carry no records).
pub const MAX_BATCHES_PER_RPC: usize = 1000;

/// Everything a delivery needs; cheap to clone.
#[derive(Clone)]
pub struct Forwarder {
    pub spool: Spool,
    pub control: ControlPlane,
    pub metrics: Arc<Metrics>,
    pub drops: DropReporter,
    pub retry: RetryPolicy,
    /// Where batches the control plane refuses are kept.
    pub rejected_dir: PathBuf,
}

/// One spooled batch on its way.
struct Item {
    id: EntryId,
    records: u32,
    data: Bytes,
    batch: Batch,
}

impl Forwarder {
    /// Forwards until `stop`; in-flight calls are abandoned then (their
    /// batches stay spooled and are sent again at the next start).
    pub async fn run(self, stop: CancellationToken) {
        let mut cursor: Option<EntryId> = None;
        let mut buffer: VecDeque<Entry> = VecDeque::new();
        let mut calls: JoinSet<Result<(), CallError>> = JoinSet::new();
        let mut retry = Retry::new(self.retry);
        loop {
            let can_send = calls.len() < MAX_IN_FLIGHT_RPCS;
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
                            tracing::error!("a delivery task failed: {e}");
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
                    cursor = None;
                    let delay = retry.delay_after(&error);
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                () = std::future::ready(()), if can_send && !buffer.is_empty() => {
                    let call = take_call(&mut buffer);
                    let this = self.clone();
                    calls.spawn(async move { this.deliver(call).await });
                }
                read = self.spool.read_after(cursor, MAX_BATCHES_PER_RPC, MAX_RPC_BYTES), if can_send && buffer.is_empty() => {
                    match read {
                        Ok(entries) => {
                            cursor = entries.last().map(|e| e.id).or(cursor);
                            buffer.extend(entries);
                        }
                        Err(e) => {
                            tracing::error!("reading the spool: {e}");
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

    /// Delivers one call's batches. A failure the control plane may recover
    /// from is returned (the caller retries from the spool); batches it
    /// refuses as invalid are split and, alone, set aside.
    async fn deliver(&self, entries: Vec<Entry>) -> Result<(), CallError> {
        let mut items = Vec::with_capacity(entries.len());
        for entry in entries {
            match Batch::decode(entry.data.clone()) {
                Ok(batch) => items.push(Item {
                    id: entry.id,
                    records: entry.records,
                    data: entry.data,
                    batch,
                }),
                // The spool checks every entry's checksum, so this is a bug
                // of the writer; keep the bytes aside and carry on.
                Err(e) => {
                    let name = format!("entry-{}", entry.id.0);
                    let why = format!("undecodable batch: {e}");
                    self.set_aside(&name, &entry.data, entry.id, entry.records, &why)
                        .await;
                }
            }
        }
        let mut queue = vec![items];
        while let Some(mut group) = queue.pop() {
            if group.is_empty() {
                continue;
            }
            let request = agentapi::ReportBoundaryLogsRequest {
                batches: group.iter().map(|item| item.batch.clone()).collect(),
            };
            let started = Instant::now();
            match self.control.report(request).await {
                Ok(response) => {
                    self.metrics
                        .rpc_duration
                        .observe(started.elapsed().as_secs_f64());
                    let unconfirmed = self.confirmed(group, response).await;
                    if !unconfirmed.is_empty() {
                        return Err(CallError::Unavailable {
                            code: tonic::Code::Internal,
                            message: format!(
                                "the control plane answered without confirming {} batches",
                                unconfirmed.len()
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
                    self.set_aside(
                        &item.batch.batch_id,
                        &item.data,
                        item.id,
                        item.records,
                        &why,
                    )
                    .await;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Acks the batches the response names; returns the others.
    async fn confirmed(
        &self,
        group: Vec<Item>,
        response: agentapi::ReportBoundaryLogsResponse,
    ) -> Vec<Item> {
        let results: HashMap<&str, &agentapi::BatchResult> = response
            .results
            .iter()
            .map(|r| (r.batch_id.as_str(), r))
            .collect();
        let now = jiff::Timestamp::now();
        let (done, unconfirmed): (Vec<Item>, Vec<Item>) = group
            .into_iter()
            .partition(|item| results.contains_key(item.batch.batch_id.as_str()));
        if done.is_empty() {
            return unconfirmed;
        }
        let ids: Vec<EntryId> = done.iter().map(|item| item.id).collect();
        if let Err(e) = self.spool.ack(&ids).await {
            // They will be sent again; the control plane deduplicates.
            tracing::error!("acknowledging delivered batches in the spool: {e}");
            return unconfirmed;
        }
        self.metrics.batches_forwarded.inc_by(done.len() as u64);
        for item in &done {
            self.metrics
                .records_forwarded
                .inc_by(u64::from(item.records));
            if let Some(received) = item
                .batch
                .received_at
                .as_ref()
                .and_then(timestamp_from_wire)
            {
                let latency = now.duration_since(received).as_secs_f64();
                self.metrics.forward_latency.observe(latency.max(0.0));
            }
        }
        unconfirmed
    }

    /// Keeps a batch the control plane cannot take in `rejected/` and takes
    /// it out of the spool, counting its records as dropped.
    async fn set_aside(&self, name: &str, data: &Bytes, id: EntryId, records: u32, why: &str) {
        let path = self.rejected_dir.join(format!("{name}.binpb"));
        let (dir, file, bytes) = (self.rejected_dir.clone(), path.clone(), data.clone());
        let written = tokio::task::spawn_blocking(move || write_durably(&dir, &file, &bytes))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        if let Err(e) = written {
            // Not kept anywhere else, so it stays in the spool (and will
            // be tried again at the next start).
            tracing::error!(path = %path.display(), "cannot set aside a refused batch, keeping it spooled: {e}");
            return;
        }
        tracing::error!(
            path = %path.display(),
            records,
            "the control plane refused a batch ({why}); it is kept in that file and counted as dropped"
        );
        self.drops.record(
            None,
            reason::REJECTED_BY_CONTROL_PLANE,
            u64::from(records),
            1,
        );
        if let Err(e) = self.spool.ack(&[id]).await {
            tracing::error!("removing a refused batch from the spool: {e}");
        }
    }
}

fn write_durably(
    dir: &std::path::Path,
    path: &std::path::Path,
    data: &[u8],
) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut file = std::fs::File::create(path)?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
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
    fn calls_pack_consecutive_batches_within_the_limits() {
        let mut buffer: VecDeque<Entry> = (0..25).map(|i| entry(i, 100, 10)).collect();
        let call = take_call(&mut buffer);
        assert_eq!(call.len(), 10, "1000 records");
        assert_eq!(call[0].id, EntryId(0));
        assert_eq!(call[9].id, EntryId(9));
        assert_eq!(take_call(&mut buffer).len(), 10);
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
