//! The record chain on PostgreSQL: the `chain_links` and `checkpoints`
//! tables, the genesis link, and the identities (workspace and agent ids)
//! the canonical encoding needs for an agent key. What is chained and how
//! is shared with SQLite ([`crate::chain`], [`crate::group::Plan::chain_link`]).
//!
//! Replicas extend one chain: every link is written under the commit lock
//! (ingest and retention both take it), after reading the head under it, so
//! links follow the commit order of record ids across replicas, one per
//! group commit.

use jiff::Timestamp;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool, PgRow};

use super::ingest::BEGIN_LOCKED;
use super::text::decode_opt;
use super::{col, db};
use crate::StoreError;
use crate::block;
use crate::chain::{self, ChainHead, ChainLink, Checkpoint, LinkBuilder, LinkKind};
use crate::group::Identities;
use crate::model::RecordId;

/// `store_state` key: the genesis link is still to be made.
const GENESIS_DUE: &str = "chain_genesis_due";

// Macros, not consts: sqlx takes only static SQL, and `concat!` only
// literals.
macro_rules! link_columns {
    () => {
        "seq, kind, first_id, last_id, records, records_hash, detail, committed_ns, head"
    };
}

macro_rules! checkpoint_columns {
    () => {
        "id, link_seq, last_id, head, signed_ns, key_id, public_key, signature"
    };
}

/// Blocks read per query while sealing the genesis link.
const GENESIS_PAGE: i64 = 1000;

/// Looks up the identities of the agents in `agents` that `known` lacks.
pub(super) async fn fill_identities(
    conn: &mut PgConnection,
    known: &mut Identities,
    agents: impl Iterator<Item = i64>,
) -> Result<(), StoreError> {
    let ctx = "reading agents' identities";
    let mut missing: Vec<i64> = agents.filter(|a| !known.contains_key(a)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort_unstable();
    missing.dedup();
    let rows = sqlx::query(
        "SELECT a.id, w.uuid, a.uuid FROM agents a JOIN workspaces w ON w.id = a.workspace_id \
         WHERE a.id = ANY($1)",
    )
    .bind(&missing)
    .fetch_all(&mut *conn)
    .await
    .map_err(db(ctx))?;
    for row in &rows {
        known.insert(col(row, 0, ctx)?, (col(row, 1, ctx)?, col(row, 2, ctx)?));
    }
    Ok(())
}

/// Where the chain stands. Called under the commit lock, so that the link
/// the caller writes extends the newest one.
pub(super) async fn head(conn: &mut PgConnection) -> Result<ChainHead, StoreError> {
    let ctx = "reading the record chain";
    let row = sqlx::query(
        "SELECT l.seq, l.head, (SELECT r.last_id FROM chain_links r WHERE r.kind = 0 \
         ORDER BY r.seq DESC LIMIT 1) FROM chain_links l ORDER BY l.seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db(ctx))?
    .ok_or_else(missing_chain)?;
    let last_id: Option<RecordId> = col(&row, 2, ctx)?;
    Ok(ChainHead {
        next_seq: col::<i64>(&row, 0, ctx)? + 1,
        last_id: last_id.unwrap_or(0),
        head: hash(col(&row, 1, ctx)?)?,
    })
}

fn missing_chain() -> StoreError {
    StoreError::Corrupt(
        "the record chain is missing (chain_links is empty): the database was tampered with or \
         damaged"
            .into(),
    )
}

/// Writes a link (inside the caller's transaction, under the commit lock).
pub(super) async fn insert_link(
    conn: &mut PgConnection,
    link: &ChainLink,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO chain_links (seq, kind, first_id, last_id, records, records_hash, detail, \
         committed_ns, head) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(link.seq)
    .bind(i16::from(link.kind.code()))
    .bind(link.first_id)
    .bind(link.last_id)
    .bind(link.records)
    .bind(link.records_hash.as_slice())
    .bind(&link.detail)
    .bind(link.committed_ns)
    .bind(link.head.as_slice())
    .execute(&mut *conn)
    .await
    .map_err(db("extending the record chain"))?;
    Ok(())
}

fn hash(bytes: Vec<u8>) -> Result<chain::Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| StoreError::Corrupt(format!("a hash of {} bytes, not 32", b.len())))
}

fn link_from_row(row: &PgRow) -> Result<ChainLink, StoreError> {
    let ctx = "reading the record chain";
    let kind: i16 = col(row, 1, ctx)?;
    Ok(ChainLink {
        seq: col(row, 0, ctx)?,
        kind: LinkKind::from_code(i64::from(kind))
            .ok_or_else(|| StoreError::Corrupt(format!("unknown link kind {kind}")))?,
        first_id: col(row, 2, ctx)?,
        last_id: col(row, 3, ctx)?,
        records: col(row, 4, ctx)?,
        records_hash: hash(col(row, 5, ctx)?)?,
        detail: col(row, 6, ctx)?,
        committed_ns: col(row, 7, ctx)?,
        head: hash(col(row, 8, ctx)?)?,
    })
}

/// Links after `after_seq`, in order.
pub(super) async fn links(
    pool: &PgPool,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<ChainLink>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        link_columns!(),
        " FROM chain_links WHERE seq > $1 ORDER BY seq LIMIT $2"
    ))
    .bind(after_seq)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db("reading the record chain"))?;
    rows.iter().map(link_from_row).collect()
}

/// The newest link.
pub(super) async fn last_link(pool: &PgPool) -> Result<Option<ChainLink>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        link_columns!(),
        " FROM chain_links ORDER BY seq DESC LIMIT 1"
    ))
    .fetch_optional(pool)
    .await
    .map_err(db("reading the record chain"))?;
    row.as_ref().map(link_from_row).transpose()
}

/// Makes the genesis link if it is due (once, whichever replica gets the
/// commit lock first), then checks that the chain exists: a chain that
/// should exist but does not is an error, since a new genesis would seal
/// whatever the database holds now.
pub(super) async fn open(pool: &PgPool) -> Result<(), StoreError> {
    let ctx = "sealing the records stored before the chain";
    let mut tx = pool.begin_with(BEGIN_LOCKED).await.map_err(db(ctx))?;
    let due = sqlx::query("SELECT 1 FROM store_state WHERE key = $1")
        .bind(GENESIS_DUE)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(ctx))?
        .is_some();
    if due {
        genesis(&mut tx).await?;
        sqlx::query("DELETE FROM store_state WHERE key = $1")
            .bind(GENESIS_DUE)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx))?;
    } else {
        // Only to fail early and clearly on a damaged chain.
        head(&mut tx).await?;
    }
    tx.commit().await.map_err(db(ctx))?;
    Ok(())
}

/// Link 0: every record stored so far, sealed (their leaves hashed and
/// their tags listed).
async fn genesis(conn: &mut PgConnection) -> Result<(), StoreError> {
    let ctx = "sealing the records stored before the chain";
    let next_id = super::ingest::next_record_id(conn).await?;
    let mut builder = LinkBuilder::default();
    let mut identities = Identities::new();
    let mut after = i64::MIN;
    loop {
        let rows = sqlx::query(
            "SELECT first_id, agent_id, session_id, data FROM blocks WHERE first_id > $1 \
             ORDER BY first_id LIMIT $2",
        )
        .bind(after)
        .bind(GENESIS_PAGE)
        .fetch_all(&mut *conn)
        .await
        .map_err(db(ctx))?;
        if rows.is_empty() {
            break;
        }
        let agents: Vec<i64> = rows
            .iter()
            .map(|row| col(row, 1, ctx))
            .collect::<Result<_, _>>()?;
        fill_identities(conn, &mut identities, agents.into_iter()).await?;
        for row in &rows {
            let first_id: RecordId = col(row, 0, ctx)?;
            let agent: i64 = col(row, 1, ctx)?;
            let session = decode_opt(col(row, 2, ctx)?);
            let data: Vec<u8> = row.try_get(3).map_err(db(ctx))?;
            let ids = *identities.get(&agent).ok_or_else(|| {
                StoreError::Corrupt(format!("blocks name agent {agent}, which does not exist"))
            })?;
            let block = block::decode(&data)?;
            let batch_of = block.batch_of_each();
            for (i, r) in block.records.iter().enumerate() {
                let batch = &block.batches[batch_of[i]];
                let view =
                    chain::block_view(first_id + i as i64, ids, session.as_deref(), r, batch);
                builder.push(&view);
            }
            after = first_id;
        }
    }
    let sealed = builder.len();
    let link = builder.finish(&ChainHead::EMPTY, next_id - 1, Timestamp::now());
    insert_link(conn, &link).await?;
    if sealed > 0 {
        tracing::info!(
            records = sealed,
            through = next_id - 1,
            "sealed the records stored before the record chain in its genesis link"
        );
    }
    Ok(())
}

fn checkpoint_from_row(row: &PgRow) -> Result<Checkpoint, StoreError> {
    let ctx = "reading checkpoints";
    Ok(Checkpoint {
        id: col(row, 0, ctx)?,
        link_seq: col(row, 1, ctx)?,
        last_id: col(row, 2, ctx)?,
        head: hash(col(row, 3, ctx)?)?,
        signed_ns: col(row, 4, ctx)?,
        key_id: col(row, 5, ctx)?,
        public_key: col(row, 6, ctx)?,
        signature: col(row, 7, ctx)?,
    })
}

/// Stores a checkpoint; returns it with its id.
pub(super) async fn insert_checkpoint(
    pool: &PgPool,
    mut c: Checkpoint,
) -> Result<Checkpoint, StoreError> {
    let ctx = "storing a checkpoint";
    let row = sqlx::query(
        "INSERT INTO checkpoints (link_seq, last_id, head, signed_ns, key_id, public_key, \
         signature) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(c.link_seq)
    .bind(c.last_id)
    .bind(c.head.as_slice())
    .bind(c.signed_ns)
    .bind(&c.key_id)
    .bind(&c.public_key)
    .bind(&c.signature)
    .fetch_one(pool)
    .await
    .map_err(db(ctx))?;
    c.id = col(&row, 0, ctx)?;
    Ok(c)
}

/// Checkpoints after `after_id`, oldest first.
pub(super) async fn checkpoints(
    pool: &PgPool,
    after_id: i64,
    limit: u32,
) -> Result<Vec<Checkpoint>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        checkpoint_columns!(),
        " FROM checkpoints WHERE id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(after_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db("reading checkpoints"))?;
    rows.iter().map(checkpoint_from_row).collect()
}

/// The newest checkpoint.
pub(super) async fn latest_checkpoint(pool: &PgPool) -> Result<Option<Checkpoint>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        checkpoint_columns!(),
        " FROM checkpoints ORDER BY id DESC LIMIT 1"
    ))
    .fetch_optional(pool)
    .await
    .map_err(db("reading checkpoints"))?;
    row.as_ref().map(checkpoint_from_row).transpose()
}
