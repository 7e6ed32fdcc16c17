//! The chain's view of stored records, read straight from blocks: each
//! record's leaf (SHA-256 of its canonical encoding) computed from the
//! decoded block, without building the API's records (names, owned strings)
//! first. This is what a whole-store verification reads
//! ([`check_store`](super::check::check_store)); both backends share it.

use uuid::Uuid;

use super::Hash;
use crate::StoreError;
use crate::block;
use crate::convert::from_nanos;
use crate::model::RecordId;
use crate::records::BlockRow;

/// The leaves of the records of one stored block (or of the part of it in
/// the range asked for), in id order: record `first_id + i` has `leaves[i]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafBlock {
    /// The id of the first leaf's record.
    pub first_id: RecordId,
    /// The block's session (every record of a block has the same).
    pub session: Option<String>,
    /// One leaf per record.
    pub leaves: Vec<Hash>,
}

/// The leaves of the records of `row` with ids in `after_id < id <
/// before_id`; `None` when it has none there. `workspace_id` and `agent_id`
/// are the identities of the block's agent.
pub(crate) fn block_leaves(
    row: &BlockRow,
    workspace_id: Uuid,
    agent_id: Uuid,
    after_id: RecordId,
    before_id: RecordId,
) -> Result<Option<LeafBlock>, StoreError> {
    let block = block::decode(&row.data)?;
    let from =
        usize::try_from(after_id.saturating_add(1).saturating_sub(row.first_id)).unwrap_or(0);
    let to = usize::try_from(before_id.saturating_sub(row.first_id))
        .unwrap_or(0)
        .min(block.records.len());
    if from >= to {
        return Ok(None);
    }
    let mut leaves = Vec::with_capacity(to - from);
    let mut buf = Vec::with_capacity(512);
    let mut start = 0usize;
    for batch in &block.batches {
        let end = start + batch.records as usize;
        if end > from && start < to {
            // As the API's records would: a receive time out of range is a
            // corrupt block, not a record to hash.
            from_nanos(batch.received_ns)?;
            for (i, r) in block
                .records
                .iter()
                .enumerate()
                .take(end.min(to))
                .skip(start.max(from))
            {
                let view = super::block_view(
                    row.first_id + i as i64,
                    (workspace_id, agent_id),
                    row.session.as_deref(),
                    r,
                    batch,
                );
                leaves.push(view.leaf(&mut buf));
            }
        }
        start = end;
    }
    // `block::decode` checked that the batches count the block's records.
    Ok(Some(LeafBlock {
        first_id: row.first_id + from as i64,
        session: row.session.clone(),
        leaves,
    }))
}
