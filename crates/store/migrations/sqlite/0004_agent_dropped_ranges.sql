-- Sequence numbers a workspace agent reported losing, per session: the
-- records of a batch its full spool dropped (drop_oldest), of a batch the
-- control plane refused, or of frames its spool could not write. Inclusive
-- ranges; a session report merges the rows that touch or overlap. The counts
-- are in `losses` as before; this says which records they were.
CREATE TABLE agent_dropped_ranges (
    agent_id   INTEGER NOT NULL REFERENCES agents (id),
    session_id TEXT    NOT NULL,
    first_seq  INTEGER NOT NULL,
    last_seq   INTEGER NOT NULL,
    PRIMARY KEY (agent_id, session_id, first_seq)
) WITHOUT ROWID;
