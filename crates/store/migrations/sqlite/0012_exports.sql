-- Export sinks (OTLP, OCSF file, syslog): each sink's cursor (the highest
-- record id it delivered; ids grow in commit order) and the lease that lets
-- one store instance at a time export it. Times are Unix nanoseconds.
CREATE TABLE export_cursors (
    sink             TEXT    PRIMARY KEY,
    cursor           INTEGER NOT NULL DEFAULT 0,
    holder           BLOB,
    lease_expires_at INTEGER NOT NULL DEFAULT 0,
    updated_at       INTEGER NOT NULL
);
