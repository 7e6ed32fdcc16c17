//! A session's blocks by sequence number, kept off the commit path.
//!
//! `session_blocks` (migration 0015) lists the blocks up to a mark,
//! `session_blocks_through` in `store_state`; the writer enters the newer
//! ones every [`StoreOptions::session_index_every`](crate::StoreOptions),
//! inside a commit it makes anyway, at most [`MAX_BLOCKS_A_COMMIT`] at a
//! time. Readers ask the view `session_block_ids`, which adds the blocks
//! above the mark straight from `blocks` (a short range of its primary key),
//! so a block is found from the moment it is committed. Triggers enter a
//! block written at or below the mark at once (retention writes back what is
//! left of a block it cut, under an old id) and drop the entry of a block
//! removed.
//!
//! Why: as an index of `blocks`, each block put an entry in its session's
//! own part of the index, so a commit with eight sessions wrote eight index
//! pages, a third of the commit's pages at 10,000 records/s
//! (`docs/benchmarks.md`). Entered together, a session's blocks share pages.

use rusqlite::{Connection, OptionalExtension, params};

use super::db::{self, Ctx};
use crate::StoreError;

/// `store_state` key: every block at or below it is in `session_blocks`.
pub(super) const SESSION_BLOCKS_THROUGH: &str = "session_blocks_through";

/// Most blocks one commit enters. Entering costs about 2.5 µs a block, and
/// the commit's records wait for it: 800 at once put 2 ms on one commit a
/// second at 10,000 records/s, where a p99 of 20 ms has 2 ms to spare.
pub(super) const MAX_BLOCKS_A_COMMIT: i64 = 128;

/// Enters up to `max_blocks` blocks above the mark, oldest first, and
/// moves the mark past them; true when none is left above it. Commits
/// carrying records take [`MAX_BLOCKS_A_COMMIT`]; the writer's start takes
/// all (nothing waits for it then, and an upgraded database's blocks are
/// all above the mark).
pub(super) fn enter_new_blocks(tx: &Connection, max_blocks: i64) -> Result<bool, StoreError> {
    let ctx = "indexing blocks by session";
    let through = db::state(tx, SESSION_BLOCKS_THROUGH).ctx(ctx)?.unwrap_or(0);
    // The last block this commit takes (the newest, when fewer are left).
    let upto: Option<i64> = tx
        .prepare_cached(
            "SELECT max(first_id) FROM (SELECT first_id FROM blocks WHERE first_id > ?1 \
             ORDER BY first_id LIMIT ?2)",
        )
        .and_then(|mut s| {
            s.query_row(params![through, max_blocks], |row| row.get(0))
                .optional()
        })
        .ctx(ctx)?
        .flatten();
    let Some(upto) = upto else {
        return Ok(true);
    };
    tx.prepare_cached(
        "INSERT INTO session_blocks (agent_id, session_id, first_seq, last_seq, first_id) \
         SELECT agent_id, session_id, first_seq, last_seq, first_id FROM blocks \
         WHERE first_id > ?1 AND first_id <= ?2 AND session_id IS NOT NULL",
    )
    .and_then(|mut s| s.execute(params![through, upto]))
    .ctx(ctx)?;
    db::set_state(tx, SESSION_BLOCKS_THROUGH, upto).ctx(ctx)?;
    let more: Option<i64> = tx
        .prepare_cached("SELECT first_id FROM blocks WHERE first_id > ?1 LIMIT 1")
        .and_then(|mut s| s.query_row(params![upto], |row| row.get(0)).optional())
        .ctx(ctx)?;
    Ok(more.is_none())
}
