//! A session's blocks by sequence number, kept off the commit path.
//!
//! `session_blocks` (migration 0015) lists the blocks up to a mark,
//! `session_blocks_through` in `store_state`; the writer enters the newer
//! ones about once a second ([`enter_new_blocks`]), inside a commit it makes
//! anyway. Readers ask the view `session_block_ids`, which adds the blocks
//! above the mark straight from `blocks` (a short range of its primary key),
//! so a block is found from the moment it is committed. Triggers enter a
//! block written at or below the mark at once (retention writes back what is
//! left of a block it cut, under an old id) and drop the entry of a block
//! removed.
//!
//! Why: as an index of `blocks`, each block put an entry in its session's
//! own part of the index, so a commit with eight sessions wrote eight index
//! pages, a third of the commit's pages at 10,000 records/s
//! (`docs/benchmarks.md`).

use rusqlite::{Connection, OptionalExtension, params};

use super::db::{self, Ctx};
use crate::StoreError;

/// `store_state` key: every block at or below it is in `session_blocks`.
pub(super) const SESSION_BLOCKS_THROUGH: &str = "session_blocks_through";

/// Enters the blocks above the mark and moves the mark to the newest block.
pub(super) fn enter_new_blocks(tx: &Connection) -> Result<(), StoreError> {
    let ctx = "indexing blocks by session";
    let through = db::state(tx, SESSION_BLOCKS_THROUGH).ctx(ctx)?.unwrap_or(0);
    let newest: Option<i64> = tx
        .prepare_cached("SELECT max(first_id) FROM blocks")
        .and_then(|mut s| s.query_row([], |row| row.get(0)).optional())
        .ctx(ctx)?
        .flatten();
    let Some(newest) = newest.filter(|&newest| newest > through) else {
        return Ok(());
    };
    tx.prepare_cached(
        "INSERT INTO session_blocks (agent_id, session_id, first_seq, last_seq, first_id) \
         SELECT agent_id, session_id, first_seq, last_seq, first_id FROM blocks \
         WHERE first_id > ?1 AND session_id IS NOT NULL",
    )
    .and_then(|mut s| s.execute(params![through]))
    .ctx(ctx)?;
    db::set_state(tx, SESSION_BLOCKS_THROUGH, newest).ctx(ctx)
}
