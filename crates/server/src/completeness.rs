//! Session completeness verdicts (`warden_evidence::verdict`): when a
//! session ends, the control plane judges whether every record it assigned
//! is accounted for, signs that at a checkpoint of the record chain, and
//! stores it.
//!
//! A session has ended when its client reported its final sequence number
//! (judged once the session has been quiet for [`SETTLE`], so that the
//! records and reports still in flight are in), or when it has been idle for
//! the idle timeout (10 minutes by default: reference clients never report
//! an end; such a session is *incomplete, no end reported*). Whatever
//! arrives for a session later (records, a late drop report) makes it due
//! again, and its next verdict supersedes the earlier one, which stays.
//!
//! The ingest path says which sessions it touched ([`SessionWatch`]); at
//! start, sessions with records after their latest verdict (those a
//! previous run had not judged yet) are taken from the store and counted
//! as touched then. With several replicas each judges the sessions it
//! ingested; a session that moved between replicas may be judged by both,
//! which only adds a verdict that supersedes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use warden_evidence::key::SigningKey;
use warden_evidence::verdict::{self, Facts, Statement};
use warden_store::verdict::SessionVerdict;
use warden_store::{Store, StoreError};

use crate::checkpoints;
use crate::metrics::Metrics;

/// How long an ended session must be quiet before it is judged.
pub const SETTLE: Duration = Duration::from_secs(2);
/// How long a session without a reported end must be idle to be judged.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(600);
/// How often due sessions are looked for.
const TICK: Duration = Duration::from_secs(1);
/// Sessions taken from the store at start, at most.
const RECOVER_LIMIT: u32 = 100_000;

type Key = (Uuid, String);

/// What is known of a session since it was last judged.
#[derive(Clone, Copy, Debug)]
struct Touch {
    /// When something last arrived for it.
    last: Instant,
    /// Whether its summary was read since then and showed no reported end
    /// (it then waits for the idle timeout, without reading it again).
    open: bool,
}

/// The sessions touched since they were last judged; cheap to share.
#[derive(Debug, Default)]
pub struct SessionWatch {
    touched: Mutex<HashMap<Key, Touch>>,
}

impl SessionWatch {
    /// A watch with nothing touched.
    pub fn new() -> Arc<SessionWatch> {
        Arc::default()
    }

    /// Something arrived for `session` of `workspace` now.
    pub fn touch(&self, workspace: Uuid, session: &str) {
        let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        touched.insert(
            (workspace, session.to_owned()),
            Touch {
                last: Instant::now(),
                open: false,
            },
        );
    }

    /// Sessions to look at now: quiet for [`SETTLE`] and not yet read
    /// (`false`), or idle for `idle` (`true`).
    fn due(&self, idle: Duration) -> Vec<(Key, bool)> {
        let now = Instant::now();
        let touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        touched
            .iter()
            .filter_map(|(key, t)| {
                let quiet = now.duration_since(t.last);
                if quiet >= idle {
                    Some((key.clone(), true))
                } else if !t.open && quiet >= SETTLE {
                    Some((key.clone(), false))
                } else {
                    None
                }
            })
            .collect()
    }

    /// Done with `key` as touched at `seen` or before: forgets it, unless
    /// it was touched again meanwhile.
    fn judged(&self, key: &Key, seen: Instant) {
        let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        if touched.get(key).is_some_and(|t| t.last <= seen) {
            touched.remove(key);
        }
    }

    /// `key` has no reported end: wait for the idle timeout.
    fn still_open(&self, key: &Key, seen: Instant) {
        let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = touched.get_mut(key)
            && t.last <= seen
        {
            t.open = true;
        }
    }
}

/// What [`judge`] did.
#[derive(Debug)]
pub enum Judged {
    /// Stored this verdict.
    Stored(SessionVerdict),
    /// Nothing to judge: the verdict would say what the latest one says
    /// (or the session or the chain is not there).
    Unchanged,
    /// The session has no reported end and is not idle yet.
    NoEnd,
}

/// Judges `session` of `workspace` now and stores the verdict, unless
/// nothing changed since its latest one; `idle` says the session is judged
/// because it has been idle (otherwise only a reported end is judged).
pub async fn judge(
    store: &dyn Store,
    key: &SigningKey,
    workspace: Uuid,
    session: &str,
    idle: bool,
) -> Result<Judged, StoreError> {
    // The facts first, then the checkpoint: a checkpoint signed after the
    // facts were read covers every record they count.
    let Some(summary) = store.session_summary(workspace, session).await? else {
        return Ok(Judged::Unchanged);
    };
    if summary.final_sequence_number.is_none() && !idle {
        return Ok(Judged::NoEnd);
    }
    if let Err(e) = checkpoints::sign_if_moved(store, key).await {
        tracing::warn!(error = %e, "no checkpoint at a session's end");
    }
    let Some(checkpoint) = store.latest_checkpoint().await? else {
        return Ok(Judged::Unchanged);
    };
    let links = store.chain_links(checkpoint.link_seq - 1, 1).await?;
    let Some(link) = links.first().filter(|l| l.seq == checkpoint.link_seq) else {
        return Ok(Judged::Unchanged);
    };
    let previous = store.session_verdicts(workspace, session).await?;
    let previous = previous.last();
    let facts = Facts::of(&summary);
    if let Some(p) = previous
        && Statement::parse(&p.statement).is_ok_and(|s| s.facts == facts)
    {
        return Ok(Judged::Unchanged);
    }
    let made_ns = i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX);
    let v = verdict::sign(
        key,
        &summary,
        link,
        checkpoint.last_id,
        previous.map(|p| p.id),
        made_ns,
    );
    Ok(Judged::Stored(store.add_session_verdict(v).await?))
}

/// Judges due sessions every second until `shutdown`.
pub async fn run(
    store: Arc<dyn Store>,
    key: Arc<SigningKey>,
    watch: Arc<SessionWatch>,
    idle: Duration,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    match store.sessions_awaiting_verdict(RECOVER_LIMIT).await {
        Ok(keys) => {
            for k in keys {
                watch.touch(k.workspace_id, &k.session_id);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot find sessions left unjudged"),
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        for ((workspace, session), idle_now) in watch.due(idle) {
            let seen = Instant::now();
            let key_ = (workspace, session);
            match judge(&*store, &key, workspace, &key_.1, idle_now).await {
                Ok(Judged::Stored(v)) => {
                    metrics.session_verdicts.inc();
                    tracing::debug!(verdict = v.id, "judged a session");
                    watch.judged(&key_, seen);
                }
                Ok(Judged::Unchanged) => watch.judged(&key_, seen),
                Ok(Judged::NoEnd) => watch.still_open(&key_, seen),
                Err(e) => tracing::warn!(error = %e, "judging a session failed"),
            }
        }
    }
}
