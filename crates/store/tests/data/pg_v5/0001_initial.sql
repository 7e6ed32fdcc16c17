-- Warden's PostgreSQL schema: the model of the SQLite schema
-- (migrations/sqlite), shaped for bulk ingest and for several control-plane
-- replicas sharing the database.
--
-- Times the control plane stamps itself are Unix nanoseconds (bigint); times a
-- client or agent sent are kept raw as (seconds, nanoseconds), because
-- evidence may carry any year. Rows have an internal bigint key; the UUIDs the
-- API shows are uuid columns. Text is stored with NUL escaped (text cannot
-- hold NUL; see src/postgres/text.rs). Text that is indexed or sorted on uses
-- the "C" collation: byte order, the same as SQLite's, whatever locale the
-- database was created with, and index comparisons that are a memcmp rather
-- than a locale-aware strcoll (the session key is in every record's index
-- entry).
--
-- Hot tables (records, line_outbox) carry no foreign keys and as few indexes
-- as the queries allow: their rows are only written by the store's own
-- statements, which keep them consistent, and every foreign key or index costs
-- each of the 100,000s of records inserted per second.

CREATE TABLE settings (
    key   text  PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE workspaces (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uuid           uuid   NOT NULL UNIQUE,
    created_at     bigint NOT NULL,
    -- Set when the workspace is deleted: its agent is revoked, its records stay
    -- and its name becomes free again.
    deleted_at     bigint,
    name           text   COLLATE "C" NOT NULL,
    owner          text   COLLATE "C" NOT NULL,
    startup_script text   NOT NULL
);
-- Also what makes two replicas creating one name at once safe.
CREATE UNIQUE INDEX workspaces_live_name ON workspaces (name) WHERE deleted_at IS NULL;
CREATE INDEX workspaces_owner ON workspaces (owner);

CREATE TABLE agents (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uuid            uuid   NOT NULL UNIQUE,
    workspace_id    bigint NOT NULL REFERENCES workspaces (id),
    token_issued_at bigint NOT NULL,
    last_contact_at bigint,
    last_batch_at   bigint,
    last_batch_uuid uuid,
    name            text   NOT NULL,
    -- SHA-256 of the agent token; NULL once revoked.
    token_hash      bytea
);
CREATE INDEX agents_workspace ON agents (workspace_id);

-- One row per delivered batch: the idempotency key of agent re-sends, and what
-- all records of the batch share.
CREATE TABLE batches (
    id             bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id       bigint  NOT NULL REFERENCES agents (id),
    uuid           uuid    NOT NULL,
    received_secs  bigint  NOT NULL,
    committed_at   bigint  NOT NULL,
    peer_uid       bigint  NOT NULL,
    peer_gid       bigint  NOT NULL,
    -- The first and last id of the batch's records (NULL when it has none):
    -- under the commit lock a batch's records take consecutive ids, so
    -- retention finds them by id range rather than through an index on
    -- records.batch_id that every insert would pay for.
    first_record   bigint,
    last_record    bigint,
    received_nanos integer NOT NULL,
    peer_pid       integer NOT NULL,
    session_id     text    COLLATE "C",
    process        text    NOT NULL,
    peer_comm      text    NOT NULL,
    peer_exe       text    NOT NULL,
    UNIQUE (agent_id, uuid)
);
-- Retention takes the oldest batches first.
CREATE INDEX batches_received ON batches (received_secs, received_nanos);

-- The records. `id` comes from the identity sequence inside the ingest
-- transaction, which holds the commit lock (see src/postgres/ingest.rs) until
-- it commits: ids grow in commit order, which a follow cursor
-- (`id > last seen`) relies on.
CREATE TABLE records (
    id              bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id        bigint  NOT NULL,
    -- Copied from the batch so the session key below can be one index.
    agent_id        bigint  NOT NULL,
    event_secs      bigint,
    -- The effective time: the event time, or the batch's receive time when the
    -- record had no usable one; Unix nanoseconds clamped to the bigint range.
    occurred_ns     bigint  NOT NULL,
    sequence_number integer NOT NULL,
    event_nanos     integer,
    allowed         boolean NOT NULL,
    conflict        boolean NOT NULL DEFAULT false,
    session_id      text    COLLATE "C",
    method          text    NOT NULL,
    url             text    NOT NULL,
    matched_rule    text    NOT NULL
);
-- A client re-sending a record the agent already delivered hits this key;
-- conflicting records (same key, other content) are stored beside the first
-- one, so the key only covers non-conflict rows. Session first, so that a
-- query by session id alone uses it too.
CREATE UNIQUE INDEX records_session_key ON records (session_id, agent_id, sequence_number)
    WHERE session_id IS NOT NULL AND NOT conflict;
-- Conflict rows are rare; this small index finds them by key.
CREATE INDEX records_conflicts ON records (session_id, agent_id, sequence_number)
    WHERE conflict;
-- The query API: by workspace (its agent) in id order, by time, denials.
CREATE INDEX records_agent ON records (agent_id, id);
CREATE INDEX records_occurred ON records (occurred_ns);
CREATE INDEX records_denied ON records (id) WHERE NOT allowed;

-- Each running store instance (control-plane replica) takes a number from
-- here and holds a session advisory lock on it while it lives.
CREATE SEQUENCE replica_numbers AS integer;

-- Records whose boundary log line has not been printed yet, as runs of ids
-- (first_id..=last_id), and the replica that must print them (the one that
-- committed the records, or the one that adopted the lines of a dead
-- replica). Runs are added in the statement that inserts the records and cut
-- down as lines are printed (see src/postgres/outbox.rs).
CREATE TABLE line_outbox (
    first_id bigint  PRIMARY KEY,
    last_id  bigint  NOT NULL CHECK (last_id >= first_id),
    replica  integer NOT NULL
);

-- Client sessions: what only the client can tell about a session, and what
-- retention removed from it.
CREATE TABLE sessions (
    agent_id              bigint NOT NULL REFERENCES agents (id),
    session_id            text   COLLATE "C" NOT NULL,
    final_sequence_number bigint,
    purged_records        bigint NOT NULL DEFAULT 0,
    purged_conflicts      bigint NOT NULL DEFAULT 0,
    purged_first          integer,
    purged_last           integer,
    PRIMARY KEY (agent_id, session_id)
);

-- Every loss the system saw, by who saw it and why; session_id is '' when no
-- session is known.
CREATE TABLE losses (
    agent_id   bigint NOT NULL REFERENCES agents (id),
    records    bigint NOT NULL DEFAULT 0,
    frames     bigint NOT NULL DEFAULT 0,
    session_id text   COLLATE "C" NOT NULL,
    source     text   COLLATE "C" NOT NULL CHECK (source IN ('client', 'agent', 'server')),
    reason     text   COLLATE "C" NOT NULL,
    PRIMARY KEY (agent_id, session_id, source, reason)
);
