-- Session completeness verdicts (src/verdict.rs): signed statements about a
-- session at a position of the record chain, only ever added; a later one
-- for the same session supersedes the earlier, which stays.
CREATE TABLE session_verdicts (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL REFERENCES workspaces (id),
    session_id    TEXT    NOT NULL,
    last_id       INTEGER NOT NULL,
    made_ns       INTEGER NOT NULL,
    statement     TEXT    NOT NULL,
    key_id        TEXT    NOT NULL,
    public_key    BLOB    NOT NULL,
    signature     BLOB    NOT NULL
);
CREATE INDEX session_verdicts_session ON session_verdicts (workspace_id, session_id, id);
