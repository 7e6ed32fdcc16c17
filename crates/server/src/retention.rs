//! Retention (`--retention DURATION`): a background task that deletes
//! records the agent received longer ago than the retention period.
//!
//! It wakes up every [`Retention::every`] and purges in passes of at most
//! [`Retention::pass_rows`] records, each its own short transaction
//! ([`Store::purge_records_before`]), until nothing older is left; ingest runs
//! between passes, so it never waits for more than one pass. Every replica of
//! a shared database may run it: one replica's pass runs at a time, and the
//! others find nothing to do meanwhile. What
//! a pass keeps and drops (session summaries and loss counters stay; lines
//! never printed are dropped with their records and counted) is the store's
//! contract.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use warden_store::{PurgeOutcome, Store, StoreError};

/// Records deleted per pass by default: a few milliseconds of work, so
/// ingest (which the SQLite store runs on the same writer) barely notices.
pub const DEFAULT_PASS_ROWS: u32 = 1000;
/// The longest pause between sweeps.
const MAX_EVERY: Duration = Duration::from_secs(60);
/// The shortest pause between sweeps.
const MIN_EVERY: Duration = Duration::from_secs(1);

/// How retention runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Records received within this long are kept.
    pub keep: Duration,
    /// The pause between sweeps.
    pub every: Duration,
    /// Records deleted per pass (one transaction).
    pub pass_rows: u32,
}

impl Retention {
    /// Keeps records for `keep`, sweeping every tenth of that (between one
    /// second and one minute) in passes of [`DEFAULT_PASS_ROWS`].
    pub fn new(keep: Duration) -> Retention {
        Retention {
            keep,
            every: (keep / 10).clamp(MIN_EVERY, MAX_EVERY),
            pass_rows: DEFAULT_PASS_ROWS,
        }
    }

    /// Records received before this are due for deletion (`None` when the
    /// period reaches back before any representable time).
    fn cutoff(&self, now: Timestamp) -> Option<Timestamp> {
        let keep = SignedDuration::try_from(self.keep).ok()?;
        now.checked_sub(keep).ok()
    }
}

/// Reads a retention period: `30d`, `2w`, `36h`, `90m`, `1d12h` (a day is
/// 24 hours and a week seven days); months and years are refused, their
/// length varies. Zero is refused: it would delete every record at once.
pub fn parse_period(text: &str) -> Result<Duration, String> {
    match warden_api::time::parse_duration(text)? {
        period if !period.is_zero() => Ok(period),
        _ => Err(format!("{text:?} is not a positive period")),
    }
}

/// What retention did (exposed on `/metrics`).
#[derive(Debug, Default)]
pub struct RetentionMetrics {
    pub purged_records: Counter,
    pub purged_batches: Counter,
    /// Lines of purged records that had never been printed.
    pub dropped_lines: Counter,
    pub passes: Counter,
    pub errors: Counter,
}

impl RetentionMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "retention_purged_records",
            "Records deleted by retention",
            self.purged_records.clone(),
        );
        registry.register(
            "retention_purged_batches",
            "Batch rows (agent idempotency keys) deleted by retention",
            self.purged_batches.clone(),
        );
        registry.register(
            "retention_dropped_lines",
            "Boundary lines never printed whose records retention deleted",
            self.dropped_lines.clone(),
        );
        registry.register(
            "retention_passes",
            "Retention passes (transactions) that deleted something",
            self.passes.clone(),
        );
        registry.register(
            "retention_errors",
            "Retention passes that failed",
            self.errors.clone(),
        );
    }

    fn observe(&self, pass: &PurgeOutcome) {
        self.passes.inc();
        self.purged_records.inc_by(pass.records);
        self.purged_batches.inc_by(pass.batches);
        self.dropped_lines.inc_by(pass.unprinted_lines);
    }
}

/// Sweeps until `shutdown` is cancelled: at once, then after each pause.
pub async fn run(
    store: Arc<dyn Store>,
    retention: Retention,
    metrics: Arc<RetentionMetrics>,
    shutdown: CancellationToken,
) {
    let mut failing = false;
    loop {
        match sweep(&*store, &retention, &metrics, &shutdown, Timestamp::now()).await {
            Ok(total) => {
                if failing {
                    tracing::info!("retention works again");
                    failing = false;
                }
                if total.records > 0 {
                    tracing::info!(
                        records = total.records,
                        batches = total.batches,
                        keep = ?retention.keep,
                        "retention deleted old records"
                    );
                }
                if total.unprinted_lines > 0 {
                    tracing::warn!(
                        lines = total.unprinted_lines,
                        "retention deleted records whose boundary lines were never printed"
                    );
                }
            }
            // The store is closing: the server is stopping.
            Err(StoreError::Closed) => return,
            Err(e) => {
                metrics.errors.inc();
                // Once per outage; the next sweep tries again.
                if !failing {
                    tracing::warn!(error = %e.chain(), "retention failed; retrying at the next sweep");
                    failing = true;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(retention.every) => {}
        }
    }
}

/// Purges everything received before `now - keep`, pass after pass, until a
/// pass finds nothing or `shutdown` is cancelled; returns the sum.
pub async fn sweep(
    store: &dyn Store,
    retention: &Retention,
    metrics: &RetentionMetrics,
    shutdown: &CancellationToken,
    now: Timestamp,
) -> Result<PurgeOutcome, StoreError> {
    let mut total = PurgeOutcome::default();
    let Some(cutoff) = retention.cutoff(now) else {
        return Ok(total);
    };
    while !shutdown.is_cancelled() {
        let pass = store
            .purge_records_before(cutoff, retention.pass_rows)
            .await?;
        if pass.is_empty() {
            break;
        }
        metrics.observe(&pass);
        total.records += pass.records;
        total.batches += pass.batches;
        total.unprinted_lines += pass.unprinted_lines;
        // Let ingest calls queued behind this pass go first.
        tokio::task::yield_now().await;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    use uuid::Uuid;
    use warden_proto::domain::{AuditRecord, ClientLogs, Decision, EventTime, IngestBatch, Peer};
    use warden_store::{IngestRequest, NewWorkspace, RecordQuery, SqliteStore, TokenHash};

    fn hours(n: i64) -> SignedDuration {
        SignedDuration::from_hours(n)
    }

    fn batch(received_at: Timestamp, records: i32) -> IngestBatch {
        IngestBatch {
            batch_id: Uuid::now_v7(),
            received_at,
            peer: Peer::default(),
            logs: Some(ClientLogs {
                session_id: Some(Uuid::new_v4().to_string()),
                confined_process_name: "claude".into(),
                records: (0..records)
                    .map(|seq| AuditRecord {
                        decision: Decision::Deny,
                        // Event times do not count: the receive time does.
                        event_time: EventTime::Known(Timestamp::UNIX_EPOCH),
                        method: "GET".into(),
                        url: format!("https://example.com/{seq}"),
                        matched_rule: String::new(),
                        sequence_number: seq,
                    })
                    .collect(),
                rejected: Vec::new(),
                policy_digest: None,
            }),
            client_status: Vec::new(),
            agent_drops: Vec::new(),
        }
    }

    /// A store with 25 records received 48 hours before `now` and 3 received
    /// an hour before, all lines printed but `unprinted` of the old ones.
    async fn store(dir: &tempfile::TempDir, now: Timestamp, unprinted: usize) -> Arc<dyn Store> {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("w.db")).await.unwrap());
        let ws = store
            .create_workspace(
                NewWorkspace {
                    id: Uuid::now_v7(),
                    name: "dev".into(),
                    owner: "alice".into(),
                    startup_script: String::new(),
                    agent_id: Uuid::new_v4(),
                    agent_name: "main".into(),
                    token_hash: TokenHash([1; 32]),
                },
                now,
            )
            .await
            .unwrap();
        // Retention goes by when the control plane took the call.
        let request = |at, batches| {
            Arc::new(IngestRequest {
                agent_id: ws.agent.id,
                at,
                batches,
            })
        };
        let old = store
            .ingest(request(
                now - hours(48),
                vec![batch(now - hours(48), 20), batch(now - hours(48), 5)],
            ))
            .await
            .unwrap();
        store
            .ingest(request(now - hours(1), vec![batch(now - hours(1), 3)]))
            .await
            .unwrap();
        let mut printed: Vec<_> = store
            .unprinted_records(None, 1000)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        printed.retain(|id| !old.record_ids[..unprinted].contains(id));
        store.mark_printed(printed).await.unwrap();
        store
    }

    async fn left(store: &dyn Store) -> usize {
        store.records(RecordQuery::default()).await.unwrap().len()
    }

    #[tokio::test]
    async fn a_sweep_deletes_what_was_received_before_the_period_in_passes() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let store = store(&dir, now, 2).await;
        let retention = Retention {
            pass_rows: 4,
            ..Retention::new(Duration::from_secs(24 * 3600))
        };
        let metrics = RetentionMetrics::default();
        let total = sweep(
            &*store,
            &retention,
            &metrics,
            &CancellationToken::new(),
            now,
        )
        .await
        .unwrap();
        assert_eq!(
            total,
            PurgeOutcome {
                records: 25,
                unprinted_lines: 2,
                batches: 2,
            }
        );
        assert_eq!(metrics.purged_records.get(), 25);
        assert_eq!(metrics.dropped_lines.get(), 2);
        assert!(metrics.passes.get() >= 7, "passes of at most 4 records");
        assert_eq!(left(&*store).await, 3);
        // Nothing more is due.
        let again = sweep(
            &*store,
            &retention,
            &metrics,
            &CancellationToken::new(),
            now,
        )
        .await
        .unwrap();
        assert_eq!(again, PurgeOutcome::default());
    }

    #[tokio::test]
    async fn a_cancelled_sweep_stops_between_passes() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let store = store(&dir, now, 0).await;
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let retention = Retention::new(Duration::from_secs(3600));
        let total = sweep(
            &*store,
            &retention,
            &RetentionMetrics::default(),
            &shutdown,
            now,
        )
        .await
        .unwrap();
        assert_eq!(total, PurgeOutcome::default());
        assert_eq!(left(&*store).await, 28);
    }

    #[tokio::test]
    async fn the_task_sweeps_at_start_and_ends_with_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, Timestamp::now(), 0).await;
        let metrics = Arc::new(RetentionMetrics::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            Arc::clone(&store),
            Retention::new(Duration::from_secs(24 * 3600)),
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
        // Polls a real condition with a deadline.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while metrics.purged_records.get() < 25 {
            assert!(tokio::time::Instant::now() < deadline, "no sweep at start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("the task ends on shutdown")
            .unwrap();
        assert_eq!(left(&*store).await, 3);
    }

    #[test]
    fn periods_read_days_and_weeks_and_refuse_the_rest() {
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(parse_period("30d"), Ok(30 * day));
        assert_eq!(parse_period("2w"), Ok(14 * day));
        assert_eq!(parse_period("1d12h"), Ok(day + day / 2));
        assert_eq!(parse_period("90m"), Ok(Duration::from_secs(5400)));
        for bad in ["", "0s", "-3d", "1 month", "2y", "soon"] {
            assert!(parse_period(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sweeps_come_every_tenth_of_the_period_within_bounds() {
        assert_eq!(
            Retention::new(Duration::from_secs(30 * 24 * 3600)).every,
            MAX_EVERY
        );
        assert_eq!(
            Retention::new(Duration::from_secs(100)).every,
            Duration::from_secs(10)
        );
        assert_eq!(Retention::new(Duration::from_secs(2)).every, MIN_EVERY);
        // A period longer than time itself purges nothing.
        assert_eq!(
            Retention::new(Duration::from_secs(u64::MAX)).cutoff(Timestamp::now()),
            None
        );
    }
}
