//! The background self-check: every minute the control plane re-verifies
//! the tail of the record chain (the newest [`TAIL_LINKS`] links and the
//! records they cover, recomputed from what the store returns) and adds up
//! the loss nobody explained, so that an alert on `/metrics` fires on
//! tampering or loss without anyone running `warden verify`:
//! `warden_chain_verify_failures_total` counts the problems found (with the
//! signer's refusals), `warden_unexplained_loss_records` is the missing
//! records no report explains, over live workspaces.
//!
//! A whole-store check is `warden verify`'s job; the tail is where a
//! tamperer covering recent tracks (or a bug in the commit path) shows
//! first, and checking it costs a bounded read.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use warden_store::chain::check::{Checker, Problem};
use warden_store::chain::{ChainHead, LinkKind};
use warden_store::{Order, RecordQuery, Store, StoreError};

use crate::metrics::Metrics;

/// How often the check runs.
pub const INTERVAL: Duration = Duration::from_secs(60);
/// How many of the newest links it re-verifies.
pub const TAIL_LINKS: i64 = 64;
/// Records read per query.
const PAGE: u32 = 10_000;

/// Re-verifies the newest `tail` links of the chain and their records;
/// returns the problems found.
pub async fn check_tail(store: &dyn Store, tail: i64) -> Result<Vec<Problem>, StoreError> {
    let Some(head) = store.chain_head().await? else {
        return Ok(Vec::new());
    };
    // The base: the newest records link at or before the tail's start, so
    // that the checker knows the head and the last record id before it.
    let mut start = (head.seq - tail).max(0);
    let base = loop {
        let link = store.chain_links(start - 1, 1).await?.into_iter().next();
        match link {
            Some(l) if l.kind == LinkKind::Records || l.seq == 0 => break Some(l),
            Some(_) => start -= 1,
            None => break None,
        }
    };
    let (base_head, after) = match &base {
        // The base link itself is not re-checked (its records are before
        // the tail): the checker starts after it.
        Some(l) if l.seq < head.seq => (
            ChainHead {
                next_seq: l.seq + 1,
                last_id: l.last_id,
                head: l.head,
            },
            l.seq,
        ),
        _ => (ChainHead::EMPTY, -1),
    };
    let mut links = Vec::new();
    let mut after_seq = after;
    loop {
        let page = store.chain_links(after_seq, 1000).await?;
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        links.extend(page);
    }
    let mut checker = Checker::new(links, base_head, false);
    let before_id = Some(checker.end().last_id + 1);
    let mut after_id = Some(base_head.last_id);
    loop {
        let page = store
            .records(RecordQuery {
                after_id,
                before_id,
                order: Order::OldestFirst,
                limit: PAGE,
                ..RecordQuery::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after_id = Some(last.id);
        for record in page {
            checker.record(record);
        }
    }
    Ok(checker.finish().0)
}

/// Missing records no report explains, over live workspaces.
pub async fn unexplained_loss(store: &dyn Store) -> Result<u64, StoreError> {
    let mut total = 0u64;
    for w in store.list_workspaces().await? {
        for s in store.sessions(w.id).await? {
            total = total.saturating_add(s.summary.unexplained());
        }
    }
    Ok(total)
}

/// Runs the check every [`INTERVAL`] until `shutdown`.
pub async fn run(store: Arc<dyn Store>, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match check_tail(&*store, TAIL_LINKS).await {
            Ok(problems) => {
                metrics.chain_self_checks.inc();
                if !problems.is_empty() {
                    metrics.chain_verify_failures.inc_by(problems.len() as u64);
                    for p in problems.iter().take(10) {
                        tracing::error!(problem = %p, "the self-check found the record chain changed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "the chain self-check could not read the store"),
        }
        match unexplained_loss(&*store).await {
            Ok(n) => {
                metrics
                    .unexplained_loss
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::warn!(error = %e, "counting unexplained loss failed"),
        }
    }
}
