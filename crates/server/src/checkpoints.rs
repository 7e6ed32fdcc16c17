//! Signed checkpoints: every 10 seconds while records arrive (and once at
//! shutdown), the control plane signs where the record chain stands and
//! stores the checkpoint.
//!
//! The signer only signs a head that extends the last checkpoint: it
//! recomputes the heads of the links after it, and refuses (logging an
//! error and counting `warden_chain_verify_failures_total`) when they do not
//! chain from the signed head, so someone who rewrote the links in the
//! database cannot have the server bless the result.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;
use warden_evidence::checkpoint;
use warden_evidence::key::SigningKey;
use warden_store::chain::{Checkpoint, LinkKind};
use warden_store::{Store, StoreError};

use crate::metrics::Metrics;

/// How often a moved chain is signed.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Why a checkpoint was not signed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The store failed.
    #[error("reading the record chain")]
    Store(#[from] StoreError),
    /// The links after the last checkpoint do not chain from its head.
    #[error("the record chain does not extend checkpoint {checkpoint} (link {link}): not signing")]
    NotExtending {
        /// The last checkpoint.
        checkpoint: i64,
        /// The first link that does not chain.
        link: i64,
    },
}

/// Signs and stores a checkpoint when the chain moved since the last one;
/// returns it.
pub async fn sign_if_moved(
    store: &dyn Store,
    key: &SigningKey,
) -> Result<Option<Checkpoint>, CheckpointError> {
    let Some(head) = store.chain_head().await? else {
        return Ok(None);
    };
    let latest = store.latest_checkpoint().await?;
    if latest.as_ref().is_some_and(|c| c.link_seq >= head.seq) {
        return Ok(None);
    }
    // From the last checkpoint (or the genesis link), recompute the heads.
    let (mut prev_head, mut last_id, after) = match &latest {
        Some(c) => (c.head, c.last_id, c.link_seq),
        None => (warden_store::chain::ZERO_HEAD, 0, -1),
    };
    let mut after_seq = after;
    let mut expected_seq = after + 1;
    let mut signed_link = None;
    loop {
        let links = store.chain_links(after_seq, 10_000).await?;
        let Some(last) = links.last() else { break };
        after_seq = last.seq;
        for link in links {
            if link.seq != expected_seq || link.compute_head(&prev_head) != link.head {
                return Err(CheckpointError::NotExtending {
                    checkpoint: latest.as_ref().map_or(0, |c| c.id),
                    link: link.seq,
                });
            }
            prev_head = link.head;
            expected_seq = link.seq + 1;
            if link.kind == LinkKind::Records {
                last_id = last_id.max(link.last_id);
            }
            signed_link = Some(link);
        }
    }
    let Some(link) = signed_link else {
        return Ok(None);
    };
    let c = checkpoint::sign(key, &link, last_id, Timestamp::now());
    Ok(Some(store.add_checkpoint(c).await?))
}

/// Signs every [`INTERVAL`] while the chain moves, and once more when
/// `shutdown` is cancelled.
pub async fn run(
    store: Arc<dyn Store>,
    key: Arc<SigningKey>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            () = shutdown.cancelled() => true,
        };
        match sign_if_moved(&*store, &key).await {
            Ok(Some(c)) => tracing::debug!(
                link = c.link_seq,
                last_record = c.last_id,
                "signed a checkpoint"
            ),
            Ok(None) => {}
            Err(e @ CheckpointError::NotExtending { .. }) => {
                metrics.chain_verify_failures.inc();
                tracing::error!(error = %e, "the record chain was changed behind the store's back");
            }
            Err(e) => tracing::warn!(error = %e, "signing a checkpoint failed"),
        }
        if stopping {
            return;
        }
    }
}
