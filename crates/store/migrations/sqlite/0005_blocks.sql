-- Records are stored in blocks (see src/block.rs): one row per group commit,
-- agent and session instead of one per record. This creates the new tables;
-- the store converts the rows of `records` into blocks right after (in Rust,
-- it owns the block format) and then drops the old tables (see
-- src/sqlite/upgrade.rs).

-- One row per block. `first_id`..=`last_id` are the ids of its records, in
-- order. The other columns are exactly what the block holds, so that a query
-- or the ingest path can pick blocks without opening them.
CREATE TABLE blocks (
    first_id       INTEGER PRIMARY KEY,
    last_id        INTEGER NOT NULL,
    agent_id       INTEGER NOT NULL REFERENCES agents (id),
    session_id     TEXT,
    first_seq      INTEGER NOT NULL,
    last_seq       INTEGER NOT NULL,
    -- Effective times (event time, or the control plane's receive time when
    -- the record had none), Unix nanoseconds clamped to the i64 range.
    min_occurred   INTEGER NOT NULL,
    max_occurred   INTEGER NOT NULL,
    -- The control plane's receive times: retention goes by the newest.
    min_received   INTEGER NOT NULL,
    max_received   INTEGER NOT NULL,
    records        INTEGER NOT NULL,
    denied         INTEGER NOT NULL,
    conflicts      INTEGER NOT NULL,
    data           BLOB    NOT NULL
);
-- A workspace's (its agent's) records newest first, and its denials.
CREATE INDEX blocks_agent ON blocks (agent_id, first_id);
CREATE INDEX blocks_agent_denied ON blocks (agent_id, first_id) WHERE denied > 0;
-- All records newest first with a denial filter, without a workspace.
CREATE INDEX blocks_denied ON blocks (first_id) WHERE denied > 0;
-- A session's blocks by sequence number (duplicate checks, session reports).
CREATE INDEX blocks_session ON blocks (agent_id, session_id, first_seq)
    WHERE session_id IS NOT NULL;
-- Retention, oldest first.
CREATE INDEX blocks_received ON blocks (max_received);

-- Delivered batch ids (the idempotency key of agent re-sends) and the block
-- that holds their records (NULL when they carried none).
CREATE TABLE batch_ids (
    agent_id     INTEGER NOT NULL,
    uuid         BLOB    NOT NULL,
    received_ns  INTEGER NOT NULL,
    block        INTEGER,
    PRIMARY KEY (agent_id, uuid)
) WITHOUT ROWID;
CREATE INDEX batch_ids_received ON batch_ids (received_ns);

-- The sequence numbers stored for each session (conflicting records aside),
-- as disjoint, non-adjacent ranges: what tells a re-sent record from a new
-- one without a row per record.
CREATE TABLE session_seqs (
    agent_id    INTEGER NOT NULL,
    session_id  TEXT    NOT NULL,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    PRIMARY KEY (agent_id, session_id, first_seq)
) WITHOUT ROWID;

-- Per session counters kept as records commit (and as retention removes
-- them), so that listing sessions reads one row per session.
ALTER TABLE sessions ADD COLUMN conflicts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN first_id INTEGER;
ALTER TABLE sessions ADD COLUMN last_id INTEGER;
ALTER TABLE sessions ADD COLUMN first_occurred INTEGER;
ALTER TABLE sessions ADD COLUMN last_occurred INTEGER;
ALTER TABLE sessions ADD COLUMN policy_digest TEXT;

-- A workspace's (its agent's) records counted per minute of effective time,
-- and its denials per hour and host: summaries read these instead of the
-- records (only the partial buckets at the edges of a range are read from
-- blocks).
CREATE TABLE activity_minutes (
    agent_id      INTEGER NOT NULL,
    minute        INTEGER NOT NULL,
    allowed       INTEGER NOT NULL,
    denied        INTEGER NOT NULL,
    conflicts     INTEGER NOT NULL,
    min_occurred  INTEGER NOT NULL,
    max_occurred  INTEGER NOT NULL,
    PRIMARY KEY (agent_id, minute)
) WITHOUT ROWID;
CREATE TABLE denied_hosts (
    agent_id  INTEGER NOT NULL,
    hour      INTEGER NOT NULL,
    host      TEXT    NOT NULL,
    records   INTEGER NOT NULL,
    PRIMARY KEY (agent_id, hour, host)
) WITHOUT ROWID;

-- Policies by digest, as clients reported them (the first text wins).
CREATE TABLE policies (
    digest      TEXT    PRIMARY KEY,
    text        TEXT    NOT NULL,
    first_seen  INTEGER NOT NULL
) WITHOUT ROWID;

-- Single values: the next record id (ids are never handed out twice, even
-- once retention removed the newest records) and the line watermark (every
-- record at or below it has had its line printed).
CREATE TABLE store_state (
    key    TEXT    PRIMARY KEY,
    value  INTEGER NOT NULL
) WITHOUT ROWID;
