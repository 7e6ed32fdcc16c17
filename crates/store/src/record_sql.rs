//! SQL text PostgreSQL uses to read a stored record back (a row per
//! record); macros so that it can be `concat!`ed into statements.

/// Columns `record_from_row` reads; `r` records, `b` batches, `a` agents,
/// `w` workspaces.
macro_rules! record_columns {
    () => {
        "SELECT r.id, w.uuid, w.name, w.owner, a.uuid, a.name, b.uuid, r.session_id, \
         r.sequence_number, r.event_secs, r.event_nanos, b.received_secs, b.received_nanos, \
         b.committed_at, r.allowed, r.method, r.url, r.matched_rule, b.process, \
         b.peer_uid, b.peer_gid, b.peer_pid, b.peer_comm, b.peer_exe, r.conflict, \
         r.url_original_bytes, b.policy_digest "
    };
}

/// The joins [`record_columns`] needs.
macro_rules! record_joins {
    () => {
        " JOIN batches b ON b.id = r.batch_id \
          JOIN agents a ON a.id = r.agent_id \
          JOIN workspaces w ON w.id = a.workspace_id "
    };
}
