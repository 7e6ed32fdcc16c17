//! SQL text for statements whose shape depends on a row count (multi-row
//! inserts, IN lists), built once per count and reused so that SQLite's
//! prepared-statement cache (kept by sqlx per connection) hits.

use std::collections::HashMap;
use std::sync::Arc;

/// Most rows in one statement: keeps the bind count (8 per record row) far
/// below SQLite's limit of 32766 and the number of cached shapes bounded.
pub(super) const MAX_ROWS: usize = 500;

/// Inserts records of one batch. Binds, in order: batch, agent, session id
/// (NULL for none), conflict flag, then per row: sequence number, event
/// seconds, event nanoseconds, effective time, allowed, method, URL, matched
/// rule.
///
/// `ON CONFLICT ... DO NOTHING` skips rows whose session key is stored
/// already (or repeated earlier in the same statement); the row count and
/// the last insert rowid tell which rows went in. Rows without a session id, and conflict rows, are outside the
/// partial unique index and always go in. (`WHERE true` is SQLite's required
/// disambiguation between INSERT ... SELECT and the upsert clause.)
fn insert_records(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO records (batch_id, agent_id, session_id, conflict, sequence_number, \
         event_secs, event_nanos, occurred_ns, allowed, method, url, matched_rule) \
         SELECT ?, ?, ?, ?, column1, column2, column3, column4, column5, column6, column7, \
         column8 FROM (VALUES ",
    );
    push_rows(&mut sql, rows, 8);
    sql.push_str(
        ") WHERE true \
         ON CONFLICT (agent_id, session_id, sequence_number) \
         WHERE session_id IS NOT NULL AND conflict = 0 DO NOTHING",
    );
    sql
}

/// The stored content of records with a session key, conflict rows
/// included. Two halves so each can use its partial index; each binds the
/// agent, the session id, then the sequence numbers.
fn stored_contents(keys: usize) -> String {
    let mut list = String::new();
    push_rows(&mut list, keys, 1);
    let half = |conflict: u8| {
        format!(
            "SELECT r.sequence_number, r.allowed, r.method, r.url, r.matched_rule, \
             r.event_secs, r.event_nanos, b.process \
             FROM records r JOIN batches b ON b.id = r.batch_id \
             WHERE r.agent_id = ? AND r.session_id = ? AND r.conflict = {conflict} \
             AND r.sequence_number IN ({list})"
        )
    };
    format!("{} UNION ALL {}", half(0), half(1))
}

/// Appends `rows` comma-separated groups of `width` parameters (a group
/// is parenthesised when `width` > 1).
///
/// Parameters are anonymous `?`, numbered by SQLite in text order, which is
/// bind order. Not `?N`: sqlx asks SQLite for each parameter's name while
/// binding, and that lookup walks the list of named parameters, so numbered
/// ones make binding quadratic (it took most of the ingest time at 800
/// parameters). And never both kinds in one statement: sqlx counts anonymous
/// parameters on their own, which goes wrong next to `?N` ones.
fn push_rows(sql: &mut String, rows: usize, width: usize) {
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        if width > 1 {
            sql.push('(');
        }
        for col in 0..width {
            if col > 0 {
                sql.push_str(", ");
            }
            sql.push('?');
        }
        if width > 1 {
            sql.push(')');
        }
    }
}

/// Built statements by shape and size.
#[derive(Default)]
pub(super) struct SqlCache {
    insert_records: HashMap<usize, Arc<str>>,
    stored_contents: HashMap<usize, Arc<str>>,
}

impl SqlCache {
    pub(super) fn insert_records(&mut self, rows: usize) -> Arc<str> {
        self.insert_records
            .entry(rows)
            .or_insert_with(|| insert_records(rows).into())
            .clone()
    }

    pub(super) fn stored_contents(&mut self, keys: usize) -> Arc<str> {
        self.stored_contents
            .entry(keys)
            .or_insert_with(|| stored_contents(keys).into())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_anonymous_in_bind_order() {
        let sql = insert_records(2);
        assert!(sql.contains("SELECT ?, ?, ?, ?, column1"), "{sql}");
        assert!(
            sql.contains("FROM (VALUES (?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?))"),
            "{sql}"
        );
        assert_eq!(sql.matches('?').count(), 4 + 2 * 8);
        let sql = stored_contents(2);
        assert_eq!(sql.matches("IN (?, ?)").count(), 2, "{sql}");
        assert_eq!(sql.matches('?').count(), 2 * (2 + 2));
        assert!(!sql.contains("?1"));
    }
}
