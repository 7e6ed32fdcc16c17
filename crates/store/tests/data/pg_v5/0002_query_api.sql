-- The query API: a workspace's (its agent's) denials, newest first, without
-- walking its allowed records: what an operator looks at first.
CREATE INDEX records_agent_denied ON records (agent_id, id) WHERE NOT allowed;
