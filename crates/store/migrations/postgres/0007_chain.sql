-- The record chain (see src/chain/mod.rs): one link per group commit,
-- written in the same transaction as its records under the commit lock, and
-- the signed checkpoints over it. The same tables as SQLite's 0010_chain.

-- `seq` 0 is the genesis link: it seals the records stored before the chain
-- existed. `detail` holds 4 bytes of each record's leaf hash (to say which
-- record changed) and, when the ids are not contiguous, the id ranges; for a
-- purge link (kind 1, a retention tombstone) the purged id ranges. Hashes
-- are 32 raw bytes.
CREATE TABLE chain_links (
    seq           bigint   PRIMARY KEY,
    kind          smallint NOT NULL,
    first_id      bigint   NOT NULL,
    last_id       bigint   NOT NULL,
    records       bigint   NOT NULL,
    records_hash  bytea    NOT NULL,
    detail        bytea    NOT NULL,
    committed_ns  bigint   NOT NULL,
    head          bytea    NOT NULL
);
-- `detail` is already dense (hash bytes): no point compressing it.
ALTER TABLE chain_links ALTER COLUMN detail SET STORAGE EXTERNAL;

-- Signed checkpoints: the chain up to link `link_seq` has head `head`, as
-- signed (Ed25519) by the key `key_id` at `signed_ns`.
CREATE TABLE checkpoints (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    link_seq    bigint NOT NULL,
    last_id     bigint NOT NULL,
    head        bytea  NOT NULL,
    signed_ns   bigint NOT NULL,
    key_id      text   NOT NULL,
    public_key  bytea  NOT NULL,
    signature   bytea  NOT NULL
);

-- The store makes the genesis link once, at its next start (in Rust: it owns
-- the encoding; the first replica to take the commit lock does it), and
-- removes this marker in the same transaction. A chain that is missing later
-- is never made again: the store refuses to start instead.
INSERT INTO store_state (key, value) VALUES ('chain_genesis_due', 1);
