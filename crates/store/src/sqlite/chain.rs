//! The record chain on SQLite: the `chain_links` and `checkpoints` tables,
//! the genesis link, and the identities (agent and workspace ids) the
//! canonical encoding needs for an agent key.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use uuid::Uuid;

use super::db::{self, Ctx};
use crate::StoreError;
use crate::block;
use crate::chain::{self, ChainHead, ChainLink, Checkpoint, LinkBuilder, LinkKind};
use crate::group;
use crate::model::RecordId;

/// `store_state` key: the genesis link is still to be made.
const GENESIS_DUE: &str = "chain_genesis_due";

const LINK_COLUMNS: &str =
    "seq, kind, first_id, last_id, records, records_hash, detail, committed_ns, head";

/// Agent key -> (workspace id, agent id), cached: agents never move.
#[derive(Default)]
pub(super) struct Identities(group::Identities);

impl Identities {
    /// Looks up every agent in `agents` not known yet; returns them all.
    pub(super) fn fill(
        &mut self,
        conn: &Connection,
        agents: impl Iterator<Item = i64>,
    ) -> Result<&group::Identities, StoreError> {
        for agent in agents {
            self.get(conn, agent)?;
        }
        Ok(&self.0)
    }

    pub(super) fn get(
        &mut self,
        conn: &Connection,
        agent: i64,
    ) -> Result<(Uuid, Uuid), StoreError> {
        if let Some(ids) = self.0.get(&agent) {
            return Ok(*ids);
        }
        let ctx = "reading an agent's identity";
        let (agent_uuid, workspace_uuid): (Vec<u8>, Vec<u8>) = conn
            .prepare_cached(
                "SELECT a.uuid, w.uuid FROM agents a JOIN workspaces w ON w.id = a.workspace_id \
                 WHERE a.id = ?1",
            )
            .and_then(|mut s| s.query_row(params![agent], |row| Ok((row.get(0)?, row.get(1)?))))
            .ctx(ctx)?;
        let ids = (
            crate::convert::uuid(&workspace_uuid)?,
            crate::convert::uuid(&agent_uuid)?,
        );
        self.0.insert(agent, ids);
        Ok(ids)
    }
}

/// Writes a link (inside the caller's transaction).
pub(super) fn insert_link(tx: &Connection, link: &ChainLink) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO chain_links (seq, kind, first_id, last_id, records, records_hash, detail, \
         committed_ns, head) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            link.seq,
            link.kind.code(),
            link.first_id,
            link.last_id,
            link.records,
            link.records_hash.as_slice(),
            link.detail,
            link.committed_ns,
            link.head.as_slice(),
        ])
    })
    .ctx("extending the record chain")?;
    Ok(())
}

fn hash(bytes: Vec<u8>) -> rusqlite::Result<chain::Hash> {
    bytes.try_into().map_err(|b: Vec<u8>| {
        rusqlite::Error::FromSqlConversionFailure(
            b.len(),
            rusqlite::types::Type::Blob,
            "a hash is 32 bytes".into(),
        )
    })
}

fn link_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ChainLink> {
    let kind: i64 = row.get(1)?;
    Ok(ChainLink {
        seq: row.get(0)?,
        kind: LinkKind::from_code(kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Integer,
                format!("unknown link kind {kind}").into(),
            )
        })?,
        first_id: row.get(2)?,
        last_id: row.get(3)?,
        records: row.get(4)?,
        records_hash: hash(row.get(5)?)?,
        detail: row.get(6)?,
        committed_ns: row.get(7)?,
        head: hash(row.get(8)?)?,
    })
}

/// Links after `after_seq`, in order.
pub(super) fn links(
    conn: &Connection,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<ChainLink>, StoreError> {
    let ctx = "reading the record chain";
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {LINK_COLUMNS} FROM chain_links WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))
        .ctx(ctx)?;
    let rows = stmt
        .query_map(params![after_seq, limit], link_from_row)
        .ctx(ctx)?;
    rows.collect::<Result<_, _>>().ctx(ctx)
}

/// The newest link.
pub(super) fn last_link(conn: &Connection) -> Result<Option<ChainLink>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {LINK_COLUMNS} FROM chain_links ORDER BY seq DESC LIMIT 1"
    ))
    .and_then(|mut s| s.query_row([], link_from_row).optional())
    .ctx("reading the record chain")
}

/// Where the chain stands, making the genesis link first when it is due.
/// A chain that should exist but does not is an error: making a new genesis
/// then would seal whatever the database holds now.
pub(super) fn open(conn: &mut Connection) -> Result<ChainHead, StoreError> {
    let ctx = "reading the record chain";
    if db::state(conn, GENESIS_DUE).ctx(ctx)?.is_some() {
        genesis(conn)?;
    }
    let Some(last) = last_link(conn)? else {
        return Err(StoreError::Corrupt(
            "the record chain is missing (chain_links is empty): the database was tampered with \
             or damaged"
                .into(),
        ));
    };
    let last_id: Option<RecordId> = conn
        .query_row(
            "SELECT max(last_id) FROM chain_links WHERE kind = 0",
            [],
            |row| row.get(0),
        )
        .ctx(ctx)?;
    Ok(ChainHead {
        next_seq: last.seq + 1,
        last_id: last_id.unwrap_or(0),
        head: last.head,
    })
}

/// Link 0: every record stored so far, sealed (their leaves hashed and
/// their tags listed), in one transaction with the marker's removal.
fn genesis(conn: &mut Connection) -> Result<(), StoreError> {
    let ctx = "sealing the records stored before the chain";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx(ctx)?;
    let next_id = db::state(&tx, db::NEXT_RECORD_ID).ctx(ctx)?.unwrap_or(1);
    let max_id: Option<i64> = tx
        .query_row("SELECT max(last_id) FROM blocks", [], |row| row.get(0))
        .ctx(ctx)?;
    let last_id = (next_id - 1).max(max_id.unwrap_or(0));
    let mut builder = LinkBuilder::default();
    let mut identities = Identities::default();
    {
        let mut stmt = tx
            .prepare("SELECT first_id, agent_id, session_id, data FROM blocks ORDER BY first_id")
            .ctx(ctx)?;
        let mut rows = stmt.query([]).ctx(ctx)?;
        while let Some(row) = rows.next().ctx(ctx)? {
            let first_id: i64 = row.get(0).ctx(ctx)?;
            let agent: i64 = row.get(1).ctx(ctx)?;
            let session: Option<String> = row.get(2).ctx(ctx)?;
            let data: Vec<u8> = row.get(3).ctx(ctx)?;
            let ids = identities.get(&tx, agent)?;
            let block = block::decode(&data)?;
            let batch_of = block.batch_of_each();
            for (i, r) in block.records.iter().enumerate() {
                let batch = &block.batches[batch_of[i]];
                let view =
                    chain::block_view(first_id + i as i64, ids, session.as_deref(), r, batch);
                builder.push(&view);
            }
        }
    }
    let sealed = builder.len();
    let link = builder.finish(&ChainHead::EMPTY, last_id, Timestamp::now());
    insert_link(&tx, &link)?;
    tx.execute(
        "DELETE FROM store_state WHERE key = ?1",
        params![GENESIS_DUE],
    )
    .ctx(ctx)?;
    tx.commit().ctx(ctx)?;
    if sealed > 0 {
        tracing::info!(
            records = sealed,
            through = last_id,
            "sealed the records stored before the record chain in its genesis link"
        );
    }
    Ok(())
}

const CHECKPOINT_COLUMNS: &str =
    "id, link_seq, last_id, head, signed_ns, key_id, public_key, signature";

fn checkpoint_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        id: row.get(0)?,
        link_seq: row.get(1)?,
        last_id: row.get(2)?,
        head: hash(row.get(3)?)?,
        signed_ns: row.get(4)?,
        key_id: row.get(5)?,
        public_key: row.get(6)?,
        signature: row.get(7)?,
    })
}

/// Stores a checkpoint; returns its id.
pub(super) fn insert_checkpoint(tx: &Connection, c: &Checkpoint) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO checkpoints (link_seq, last_id, head, signed_ns, key_id, public_key, \
         signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            c.link_seq,
            c.last_id,
            c.head.as_slice(),
            c.signed_ns,
            c.key_id,
            c.public_key,
            c.signature
        ])
    })
    .ctx("storing a checkpoint")?;
    Ok(tx.last_insert_rowid())
}

/// Checkpoints after `after_id`, oldest first.
pub(super) fn checkpoints(
    conn: &Connection,
    after_id: i64,
    limit: u32,
) -> Result<Vec<Checkpoint>, StoreError> {
    let ctx = "reading checkpoints";
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))
        .ctx(ctx)?;
    let rows = stmt
        .query_map(params![after_id, limit], checkpoint_from_row)
        .ctx(ctx)?;
    rows.collect::<Result<_, _>>().ctx(ctx)
}

/// The newest checkpoint.
pub(super) fn latest_checkpoint(conn: &Connection) -> Result<Option<Checkpoint>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY id DESC LIMIT 1"
    ))
    .and_then(|mut s| s.query_row([], checkpoint_from_row).optional())
    .ctx("reading checkpoints")
}
