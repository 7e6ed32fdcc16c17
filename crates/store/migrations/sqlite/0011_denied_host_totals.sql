-- A workspace's (its agent's) denied records per host over all time, kept
-- as records commit and as retention removes them: an all-time summary
-- reads its most denied hosts in order from the index instead of summing
-- every hour's counts.
CREATE TABLE denied_host_totals (
    agent_id  INTEGER NOT NULL,
    host      TEXT    NOT NULL,
    records   INTEGER NOT NULL,
    PRIMARY KEY (agent_id, host)
) WITHOUT ROWID;
CREATE INDEX denied_host_totals_top ON denied_host_totals (agent_id, records DESC, host);
INSERT INTO denied_host_totals (agent_id, host, records)
    SELECT agent_id, host, sum(records) FROM denied_hosts GROUP BY agent_id, host;
