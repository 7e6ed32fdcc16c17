-- Session completeness verdicts (src/verdict.rs): signed statements about a
-- session at a position of the record chain, only ever added; a later one
-- for the same session supersedes the earlier, which stays. The same table
-- as SQLite's 0014_session_verdicts; session ids are stored with NUL
-- escaped, as everywhere.
CREATE TABLE session_verdicts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  bigint NOT NULL REFERENCES workspaces (id),
    session_id    text   COLLATE "C" NOT NULL,
    last_id       bigint NOT NULL,
    made_ns       bigint NOT NULL,
    statement     text   NOT NULL,
    key_id        text   NOT NULL,
    public_key    bytea  NOT NULL,
    signature     bytea  NOT NULL
);
CREATE INDEX session_verdicts_session ON session_verdicts (workspace_id, session_id, id);
