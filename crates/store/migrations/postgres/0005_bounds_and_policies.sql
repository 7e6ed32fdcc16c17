-- What a record's URL was cut from (NULL: stored whole), the policy digest a
-- batch's records were decided under, the latest one of each session, and
-- policy texts by digest (the first one wins). Retention goes by the control
-- plane's own receive time (the batch's commit stamp), not the agent's.
ALTER TABLE records ADD COLUMN url_original_bytes bigint;
ALTER TABLE batches ADD COLUMN policy_digest text COLLATE "C";
ALTER TABLE sessions ADD COLUMN policy_digest text COLLATE "C";
CREATE TABLE policies (
    digest     text   COLLATE "C" PRIMARY KEY,
    text       text   NOT NULL,
    first_seen bigint NOT NULL
);
CREATE INDEX batches_committed ON batches (committed_at);
