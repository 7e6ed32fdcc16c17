-- The record chain (see src/chain.rs): one link per group commit, written in
-- the same transaction as its records, and the signed checkpoints over it.

-- `seq` 0 is the genesis link: it seals the records stored before the chain
-- existed. `detail` holds 4 bytes of each record's leaf hash (to say which
-- record changed) and, when the ids are not contiguous, the id ranges; for a
-- purge link (kind 1, a retention tombstone) the purged id ranges. Hashes
-- are 32 raw bytes.
CREATE TABLE chain_links (
    seq           INTEGER PRIMARY KEY,
    kind          INTEGER NOT NULL,
    first_id      INTEGER NOT NULL,
    last_id       INTEGER NOT NULL,
    records       INTEGER NOT NULL,
    records_hash  BLOB    NOT NULL,
    detail        BLOB    NOT NULL,
    committed_ns  INTEGER NOT NULL,
    head          BLOB    NOT NULL
);

-- Signed checkpoints: the chain up to link `link_seq` has head `head`, as
-- signed (Ed25519) by the key `key_id` at `signed_ns`.
CREATE TABLE checkpoints (
    id          INTEGER PRIMARY KEY,
    link_seq    INTEGER NOT NULL,
    last_id     INTEGER NOT NULL,
    head        BLOB    NOT NULL,
    signed_ns   INTEGER NOT NULL,
    key_id      TEXT    NOT NULL,
    public_key  BLOB    NOT NULL,
    signature   BLOB    NOT NULL
);

-- The store makes the genesis link once, at its next start (in Rust: it
-- owns the encoding), and removes this marker in the same transaction. A
-- chain that is missing later is never made again: the store refuses to
-- start instead.
INSERT INTO store_state (key, value) VALUES ('chain_genesis_due', 1);
