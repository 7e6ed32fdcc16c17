//! Where a record's time goes, read back through the store after a run:
//! every stored record carries its event time (the client made it), the time
//! the agent read it from its socket (its `agent_received_at`) and the time
//! the control plane took the call that delivered it (its `received_at`,
//! taken when the call arrives, before the commit). So per record:
//!
//! - client: event time to agent read (client queue, batching, socket);
//! - agent: agent read to the server's call (spool fsync, forwarder queue,
//!   gRPC);
//!
//! and what the end-to-end latency adds to both is the server's (decode,
//! group commit, printing the line).

use anyhow::Context;
use serde::Serialize;
use uuid::Uuid;
use warden_store::{DatabaseUrl, Order, RecordQuery};

use super::latency::Latency;

/// The per-stage latencies of one run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Stages {
    /// Event time to the agent reading the record.
    pub client: Latency,
    /// The agent reading it to the server taking the call.
    pub agent: Latency,
    /// Event time to the server taking the call.
    pub to_server: Latency,
}

/// Records read per page.
const PAGE: u32 = 50_000;

/// Reads the times of every record of the workspace through the store (a
/// run's store, after the server stopped).
pub async fn read(url: &DatabaseUrl, workspace_id: Uuid) -> anyhow::Result<Stages> {
    let store = warden_store::open(url)
        .await
        .context("opening the run's store")?;
    let mut times = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .records(RecordQuery {
                workspace_id: Some(workspace_id),
                after_id: after,
                order: Order::OldestFirst,
                limit: PAGE,
                ..RecordQuery::default()
            })
            .await
            .context("reading the record times")?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        times.extend(page.iter().filter_map(|r| {
            let event = r.event_time.known()?;
            Some((
                nanos(event),
                nanos(r.agent_received_at),
                nanos(r.received_at),
            ))
        }));
    }
    store.close().await.context("closing the run's store")?;
    Ok(Stages::of(&times))
}

fn nanos(t: jiff::Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(i64::MAX)
}

impl Stages {
    fn of(times: &[(i64, i64, i64)]) -> Stages {
        let span = |f: fn(&(i64, i64, i64)) -> i64| {
            let mut nanos: Vec<u64> = times.iter().map(|t| f(t).max(0) as u64).collect();
            Latency::of(&mut nanos)
        };
        Stages {
            client: span(|&(event, read, _)| read - event),
            agent: span(|&(_, read, call)| call - read),
            to_server: span(|&(event, _, call)| call - event),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stage_is_measured_from_its_own_start() {
        let ms = 1_000_000;
        let times: Vec<_> = (0..100)
            .map(|i| (i * ms, i * ms + 2 * ms, i * ms + 7 * ms))
            .collect();
        let stages = Stages::of(&times);
        assert_eq!(stages.client.p50_ms, 2.0);
        assert_eq!(stages.agent.p99_ms, 5.0);
        assert_eq!(stages.to_server.max_ms, 7.0);
        assert_eq!(stages.client.samples, 100);
    }
}
