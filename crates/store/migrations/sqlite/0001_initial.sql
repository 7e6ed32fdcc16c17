-- Warden's SQLite schema. Times the control plane stamps itself are Unix
-- nanoseconds (INTEGER); times a client or agent sent are kept as the raw
-- (seconds, nanoseconds) pair, because evidence may carry any year.
-- Rows keep an internal INTEGER key; the UUIDs the API shows are BLOB(16).

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE workspaces (
    id             INTEGER PRIMARY KEY,
    uuid           BLOB    NOT NULL UNIQUE,
    name           TEXT    NOT NULL,
    owner          TEXT    NOT NULL,
    startup_script TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    -- Set when the workspace is deleted: its agent is revoked, its records stay
    -- and its name becomes free again.
    deleted_at     INTEGER
);
CREATE UNIQUE INDEX workspaces_live_name ON workspaces (name) WHERE deleted_at IS NULL;

CREATE TABLE agents (
    id               INTEGER PRIMARY KEY,
    uuid             BLOB    NOT NULL UNIQUE,
    workspace_id     INTEGER NOT NULL REFERENCES workspaces (id),
    name             TEXT    NOT NULL,
    -- SHA-256 of the agent token; NULL once revoked.
    token_hash       BLOB,
    token_issued_at  INTEGER NOT NULL,
    last_contact_at  INTEGER,
    last_batch_at    INTEGER,
    last_batch_uuid  BLOB
);
CREATE INDEX agents_workspace ON agents (workspace_id);

-- One row per delivered batch: the idempotency key of agent re-sends, and what
-- all records of the batch share.
CREATE TABLE batches (
    id              INTEGER PRIMARY KEY,
    agent_id        INTEGER NOT NULL REFERENCES agents (id),
    uuid            BLOB    NOT NULL,
    received_secs   INTEGER NOT NULL,
    received_nanos  INTEGER NOT NULL,
    committed_at    INTEGER NOT NULL,
    session_id      TEXT,
    process         TEXT    NOT NULL,
    peer_uid        INTEGER NOT NULL,
    peer_gid        INTEGER NOT NULL,
    peer_pid        INTEGER NOT NULL,
    peer_comm       TEXT    NOT NULL,
    peer_exe        TEXT    NOT NULL
);
CREATE UNIQUE INDEX batches_agent_uuid ON batches (agent_id, uuid);

-- The records. `id` is assigned in commit order by the single writer (the next
-- rowid), which is what a follow cursor (`id > last seen`) relies on.
CREATE TABLE records (
    id               INTEGER PRIMARY KEY,
    batch_id         INTEGER NOT NULL REFERENCES batches (id),
    -- Copied from the batch so the session key below can be one index.
    agent_id         INTEGER NOT NULL,
    session_id       TEXT,
    sequence_number  INTEGER NOT NULL,
    event_secs       INTEGER,
    event_nanos      INTEGER,
    allowed          INTEGER NOT NULL,
    method           TEXT    NOT NULL,
    url              TEXT    NOT NULL,
    matched_rule     TEXT    NOT NULL,
    conflict         INTEGER NOT NULL DEFAULT 0
);
-- A client re-sending a record the agent already delivered hits this key.
-- Conflicting records (same key, other content) are stored beside the first
-- one, so the key only covers non-conflict rows.
CREATE UNIQUE INDEX records_session_key ON records (agent_id, session_id, sequence_number)
    WHERE session_id IS NOT NULL AND conflict = 0;
-- Conflict rows are rare; this small index finds them by key.
CREATE INDEX records_conflicts ON records (agent_id, session_id, sequence_number)
    WHERE conflict = 1;

-- Records whose boundary log line has not been printed yet. Rows are added in
-- the transaction that commits the records and removed once the line is out.
CREATE TABLE line_outbox (
    record_id INTEGER PRIMARY KEY REFERENCES records (id)
);

-- Client sessions: what only the client can tell about a session.
CREATE TABLE sessions (
    agent_id               INTEGER NOT NULL REFERENCES agents (id),
    session_id             TEXT    NOT NULL,
    final_sequence_number  INTEGER,
    PRIMARY KEY (agent_id, session_id)
) WITHOUT ROWID;

-- Every loss the system saw, by who saw it and why; session_id is '' when no
-- session is known.
CREATE TABLE losses (
    agent_id    INTEGER NOT NULL REFERENCES agents (id),
    session_id  TEXT    NOT NULL,
    source      TEXT    NOT NULL CHECK (source IN ('client', 'agent', 'server')),
    reason      TEXT    NOT NULL,
    records     INTEGER NOT NULL DEFAULT 0,
    frames      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (agent_id, session_id, source, reason)
) WITHOUT ROWID;
