-- Query filters and retention.

-- A record's effective time: its event time, or the batch's receive time when
-- the record had no usable one; Unix nanoseconds clamped to the i64 range
-- (years 1677..=2262), which keeps the order. New rows get it from the store;
-- existing rows are filled in here the same way.
ALTER TABLE records ADD COLUMN occurred_ns INTEGER NOT NULL DEFAULT 0;
UPDATE records SET occurred_ns = (
    SELECT CASE
        WHEN secs < -9223372036 THEN -9223372036854775808
        WHEN secs > 9223372035 THEN 9223372036854775807
        ELSE secs * 1000000000 + nanos
    END
    FROM (
        SELECT
            CASE WHEN records.event_secs BETWEEN -62135596800 AND 253402207200
                  AND records.event_nanos BETWEEN 0 AND 999999999
                THEN records.event_secs ELSE b.received_secs END AS secs,
            CASE WHEN records.event_secs BETWEEN -62135596800 AND 253402207200
                  AND records.event_nanos BETWEEN 0 AND 999999999
                THEN records.event_nanos ELSE b.received_nanos END AS nanos
        FROM batches b WHERE b.id = records.batch_id
    )
);

-- The query API: by time, by workspace (its agent) newest first, denials.
CREATE INDEX records_occurred ON records (occurred_ns);
CREATE INDEX records_agent ON records (agent_id, id);
CREATE INDEX records_denied ON records (id) WHERE allowed = 0;
CREATE INDEX workspaces_owner ON workspaces (owner);

-- Retention: the oldest batches, then their records.
CREATE INDEX batches_received ON batches (received_secs, received_nanos);
CREATE INDEX records_batch ON records (batch_id);

-- What retention removed from a session, so its summary stays whole.
ALTER TABLE sessions ADD COLUMN purged_records INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN purged_conflicts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN purged_first INTEGER;
ALTER TABLE sessions ADD COLUMN purged_last INTEGER;
