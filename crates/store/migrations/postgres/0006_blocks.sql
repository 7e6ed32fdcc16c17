-- Records are stored in blocks (see src/block.rs), as on SQLite: one row per
-- group commit, agent and session instead of one per record, the block
-- itself a compressed bytea in the same format. This creates the new tables;
-- the store converts the rows of `records` into blocks right after (in Rust,
-- it owns the block format) and then drops the old tables (see
-- src/postgres/upgrade.rs). The line outbox (runs of record ids per replica)
-- stays as it is: one run per group commit.

-- One row per block. `first_id`..=`last_id` are the ids of its records, in
-- order. The other columns are exactly what the block holds, so that a query
-- or the ingest path can pick blocks without opening them.
CREATE TABLE blocks (
    first_id      bigint  PRIMARY KEY,
    last_id       bigint  NOT NULL,
    agent_id      bigint  NOT NULL,
    -- Effective times (event time, or the control plane's receive time when
    -- the record had none), Unix nanoseconds clamped to the bigint range.
    min_occurred  bigint  NOT NULL,
    max_occurred  bigint  NOT NULL,
    -- The control plane's receive times: retention goes by the newest.
    min_received  bigint  NOT NULL,
    max_received  bigint  NOT NULL,
    first_seq     integer NOT NULL,
    last_seq      integer NOT NULL,
    records       integer NOT NULL,
    denied        integer NOT NULL,
    conflicts     integer NOT NULL,
    session_id    text    COLLATE "C",
    data          bytea   NOT NULL
);
-- The block is compressed already: no second compression attempt.
ALTER TABLE blocks ALTER COLUMN data SET STORAGE EXTERNAL;
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

-- Delivered batch ids (the idempotency key of agent re-sends) and the id of
-- the last record of the batch (NULL when it carried none).
CREATE TABLE batch_ids (
    agent_id     bigint NOT NULL,
    uuid         uuid   NOT NULL,
    received_ns  bigint NOT NULL,
    block        bigint,
    PRIMARY KEY (agent_id, uuid)
);
CREATE INDEX batch_ids_received ON batch_ids (received_ns);

-- The sequence numbers stored for each session (conflicting records aside),
-- as disjoint, non-adjacent ranges.
CREATE TABLE session_seqs (
    agent_id    bigint NOT NULL,
    session_id  text   COLLATE "C" NOT NULL,
    first_seq   bigint NOT NULL,
    last_seq    bigint NOT NULL,
    PRIMARY KEY (agent_id, session_id, first_seq)
);

-- Per session counters kept as records commit (and as retention removes
-- them), so that listing sessions reads one row per session.
ALTER TABLE sessions ADD COLUMN conflicts bigint NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN first_id bigint;
ALTER TABLE sessions ADD COLUMN last_id bigint;
ALTER TABLE sessions ADD COLUMN first_occurred bigint;
ALTER TABLE sessions ADD COLUMN last_occurred bigint;

-- A workspace's (its agent's) records per minute of effective time, and its
-- denials per hour and host.
CREATE TABLE activity_minutes (
    agent_id      bigint NOT NULL,
    minute        bigint NOT NULL,
    allowed       bigint NOT NULL,
    denied        bigint NOT NULL,
    conflicts     bigint NOT NULL,
    min_occurred  bigint NOT NULL,
    max_occurred  bigint NOT NULL,
    PRIMARY KEY (agent_id, minute)
);
CREATE TABLE denied_hosts (
    agent_id  bigint NOT NULL,
    hour      bigint NOT NULL,
    host      text   COLLATE "C" NOT NULL,
    records   bigint NOT NULL,
    PRIMARY KEY (agent_id, hour, host)
);

-- Single values: the next record id (ids are never handed out twice, even
-- once retention removed the newest records), read and advanced under the
-- commit lock.
CREATE TABLE store_state (
    key    text   COLLATE "C" PRIMARY KEY,
    value  bigint NOT NULL
);
-- Denied records per host over all time: an all-time summary reads its most
-- denied hosts in order from the index instead of summing every hour.
CREATE TABLE denied_host_totals (
    agent_id  bigint NOT NULL,
    host      text   COLLATE "C" NOT NULL,
    records   bigint NOT NULL,
    PRIMARY KEY (agent_id, host)
);
CREATE INDEX denied_host_totals_top ON denied_host_totals (agent_id, records DESC, host);
