//! Records as the API shows them, from decoded blocks: shared by both
//! backends' readers.

use uuid::Uuid;

use crate::StoreError;
use crate::block::Block;
use crate::convert::{from_nanos, nanos};
use crate::model::{RecordId, RecordQuery, StoredRecord, agent_time_suspect};

/// A `blocks` row as readers select it.
pub(crate) struct BlockRow {
    pub first_id: RecordId,
    pub last_id: RecordId,
    pub agent: i64,
    pub session: Option<String>,
    pub data: Vec<u8>,
}

/// Who an agent is, for the records it delivered.
#[derive(Clone, Debug)]
pub(crate) struct AgentInfo {
    pub agent_id: Uuid,
    pub agent_name: String,
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub workspace_owner: String,
}

/// Record `i` of a decoded block as the API shows it.
pub(crate) fn stored_record(
    row: &BlockRow,
    block: &Block<'_>,
    batch_of: &[usize],
    i: usize,
    agent: &AgentInfo,
) -> Result<StoredRecord, StoreError> {
    let r = &block.records[i];
    let batch = &block.batches[batch_of[i]];
    let received_at = from_nanos(batch.received_ns)?;
    Ok(StoredRecord {
        id: row.first_id + i as i64,
        workspace_id: agent.workspace_id,
        workspace_name: agent.workspace_name.clone(),
        workspace_owner: agent.workspace_owner.clone(),
        agent_id: agent.agent_id,
        agent_name: agent.agent_name.clone(),
        batch_id: batch.batch_id,
        session_id: row.session.clone(),
        sequence_number: r.sequence_number,
        event_time: r.event_time,
        received_at,
        agent_received_at: batch.agent_received_at,
        agent_time_suspect: agent_time_suspect(batch.agent_received_at, received_at),
        committed_at: received_at,
        decision: r.decision,
        method: r.method.clone().into_owned(),
        url: r.url.clone().into_owned(),
        url_original_bytes: r.url_original_bytes,
        matched_rule: r.matched_rule.clone().into_owned(),
        process: batch.process.clone().into_owned(),
        peer: batch.peer.to_peer(),
        policy_digest: batch.policy_digest.as_ref().map(|d| d.clone().into_owned()),
        conflict: r.conflict,
    })
}

/// Whether record `i` of a block matches the per-record filters.
pub(crate) fn matches(
    query: &RecordQuery,
    row: &BlockRow,
    block: &Block<'_>,
    batch_of: &[usize],
    i: usize,
) -> bool {
    let id = row.first_id + i as i64;
    let r = &block.records[i];
    if query.after_id.is_some_and(|a| id <= a) || query.before_id.is_some_and(|b| id >= b) {
        return false;
    }
    if query.decision.is_some_and(|d| d != r.decision)
        || query.conflict.is_some_and(|c| c != r.conflict)
        || query.method.as_deref().is_some_and(|m| m != r.method)
    {
        return false;
    }
    if query.since.is_some() || query.until.is_some() {
        let t = r
            .event_time
            .known()
            .map_or(block.batches[batch_of[i]].received_ns, nanos);
        if query.since.is_some_and(|s| t < nanos(s)) || query.until.is_some_and(|u| t >= nanos(u)) {
            return false;
        }
    }
    query
        .url_contains
        .as_deref()
        .is_none_or(|text| r.url.contains(text))
}
