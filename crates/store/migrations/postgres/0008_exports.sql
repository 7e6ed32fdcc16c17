-- Export sinks (OTLP, OCSF file, syslog): each sink's cursor (the highest
-- record id it delivered; ids grow in commit order) and the lease that lets
-- one replica at a time export it. Times are Unix nanoseconds of the
-- database's clock, so replicas with skewed clocks agree on who holds a lease.
CREATE TABLE export_cursors (
    sink             text   COLLATE "C" PRIMARY KEY,
    cursor           bigint NOT NULL DEFAULT 0,
    holder           uuid,
    lease_expires_at bigint NOT NULL DEFAULT 0,
    updated_at       bigint NOT NULL
);
