-- A session's blocks by sequence number (conflict checks at ingest, a
-- session's records in order, its bounds after retention), kept off the
-- commit path. As an index of `blocks` it took one entry per block in the
-- session's own part of the index, so a commit with eight sessions wrote
-- eight index pages (a third of the commit's pages at 10,000 records/s).
-- Blocks are entered here by the writer about once a second instead, up to
-- `session_blocks_through` in `store_state`; readers take the blocks above
-- it from `blocks` itself (the view below), so nothing is ever missing.
CREATE TABLE session_blocks (
    agent_id    INTEGER NOT NULL,
    session_id  TEXT    NOT NULL,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    first_id    INTEGER NOT NULL,
    PRIMARY KEY (agent_id, session_id, first_seq, first_id)
) WITHOUT ROWID;

INSERT INTO session_blocks (agent_id, session_id, first_seq, last_seq, first_id)
    SELECT agent_id, session_id, first_seq, last_seq, first_id FROM blocks
    WHERE session_id IS NOT NULL;
INSERT INTO store_state (key, value)
    SELECT 'session_blocks_through', coalesce(max(first_id), 0) FROM blocks;

-- Every session block: those entered above and those above the mark.
CREATE VIEW session_block_ids (agent_id, session_id, first_seq, last_seq, first_id) AS
    SELECT agent_id, session_id, first_seq, last_seq, first_id FROM session_blocks
    UNION ALL
    SELECT agent_id, session_id, first_seq, last_seq, first_id FROM blocks
    WHERE session_id IS NOT NULL AND first_id > coalesce(
        (SELECT value FROM store_state WHERE key = 'session_blocks_through'), 0);

-- A block written at or below the mark (retention writes back what is left
-- of a block it cut, under an old id) is entered at once; a block removed
-- takes its entry with it.
CREATE TRIGGER session_blocks_enter_old_ids AFTER INSERT ON blocks
    WHEN new.session_id IS NOT NULL AND new.first_id <= coalesce(
        (SELECT value FROM store_state WHERE key = 'session_blocks_through'), 0)
    BEGIN
        INSERT INTO session_blocks (agent_id, session_id, first_seq, last_seq, first_id)
        VALUES (new.agent_id, new.session_id, new.first_seq, new.last_seq, new.first_id);
    END;
CREATE TRIGGER session_blocks_follow_deletes AFTER DELETE ON blocks
    WHEN old.session_id IS NOT NULL
    BEGIN
        DELETE FROM session_blocks WHERE agent_id = old.agent_id
            AND session_id = old.session_id AND first_seq = old.first_seq
            AND first_id = old.first_id;
    END;

DROP INDEX blocks_session;
