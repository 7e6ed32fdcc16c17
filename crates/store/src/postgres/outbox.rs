//! The line outbox on PostgreSQL: runs of record ids, not one row per record.
//!
//! A row `(first_id, last_id, replica)` says that every record with an id in
//! that range has a line the replica must print. An ingest adds one row per
//! run of consecutive ids it inserted (under the commit lock that is one run
//! per insert statement), in the same statement as the records. Marking
//! lines printed (or purging records) removes ids from the runs: whole runs
//! are deleted, partly covered ones are cut into what is left. One row per
//! commit instead of one per record halves the write work of the outbox on
//! the hot path.

use sqlx::Row;
use sqlx::postgres::PgConnection;

use crate::model::RecordId;

/// An inclusive run of record ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Run {
    pub first: RecordId,
    pub last: RecordId,
}

impl Run {
    fn len(self) -> u64 {
        u64::try_from(self.last - self.first + 1).unwrap_or(0)
    }
}

/// Sorted, deduplicated ids as runs of consecutive ids.
pub(super) fn runs(ids: &[RecordId]) -> Vec<Run> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut out: Vec<Run> = Vec::new();
    for id in ids {
        match out.last_mut() {
            Some(run) if run.last.checked_add(1) == Some(id) => run.last = id,
            _ => out.push(Run {
                first: id,
                last: id,
            }),
        }
    }
    out
}

/// What is left of `run` once the ids in `removed` (sorted, disjoint) are
/// taken out.
fn subtract(run: Run, removed: &[Run]) -> Vec<Run> {
    let mut left = Vec::new();
    let mut next = run.first;
    for cut in removed {
        if cut.last < next || cut.first > run.last {
            continue;
        }
        if cut.first > next {
            left.push(Run {
                first: next,
                last: cut.first - 1,
            });
        }
        match cut.last.checked_add(1) {
            Some(after) if after <= run.last => next = after,
            _ => return left,
        }
    }
    left.push(Run {
        first: next,
        last: run.last,
    });
    left
}

/// Takes `ids` out of the outbox, whoever's lines they are; returns how many
/// of them were in it. Runs in the caller's transaction; the rows it changes
/// are locked in key order, so concurrent callers cannot deadlock.
pub(super) async fn remove(conn: &mut PgConnection, ids: &[RecordId]) -> Result<u64, sqlx::Error> {
    let cuts = runs(ids);
    let (Some(low), Some(high)) = (cuts.first(), cuts.last()) else {
        return Ok(0);
    };
    let rows = sqlx::query(
        "SELECT first_id, last_id, replica FROM line_outbox \
         WHERE first_id <= $2 AND last_id >= $1 ORDER BY first_id FOR UPDATE",
    )
    .bind(low.first)
    .bind(high.last)
    .fetch_all(&mut *conn)
    .await?;
    let mut removed = 0;
    let mut gone = Vec::new();
    let (mut firsts, mut lasts, mut replicas) = (Vec::new(), Vec::new(), Vec::new());
    for row in &rows {
        let run = Run {
            first: row.try_get(0)?,
            last: row.try_get(1)?,
        };
        let replica: i32 = row.try_get(2)?;
        let left = subtract(run, &cuts);
        if left == [run] {
            continue;
        }
        removed += run.len() - left.iter().map(|r| r.len()).sum::<u64>();
        gone.push(run.first);
        for piece in left {
            firsts.push(piece.first);
            lasts.push(piece.last);
            replicas.push(replica);
        }
    }
    if gone.is_empty() {
        return Ok(0);
    }
    sqlx::query("DELETE FROM line_outbox WHERE first_id = ANY($1)")
        .bind(&gone)
        .execute(&mut *conn)
        .await?;
    if !firsts.is_empty() {
        sqlx::query(
            "INSERT INTO line_outbox (first_id, last_id, replica) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::integer[])",
        )
        .bind(&firsts)
        .bind(&lasts)
        .bind(&replicas)
        .execute(&mut *conn)
        .await?;
    }
    Ok(removed)
}

/// Up to `limit` ids of the replica's unprinted lines after `after`, in
/// order.
pub(super) async fn due_ids(
    conn: &mut PgConnection,
    replica: i32,
    after: RecordId,
    limit: u32,
) -> Result<Vec<RecordId>, sqlx::Error> {
    // Each run holds at least one id, so `limit` runs are enough.
    let rows = sqlx::query(
        "SELECT first_id, last_id FROM line_outbox WHERE replica = $1 AND last_id > $2 \
         ORDER BY first_id LIMIT $3",
    )
    .bind(replica)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut ids = Vec::new();
    for row in &rows {
        let first: RecordId = row.try_get(0)?;
        let last: RecordId = row.try_get(1)?;
        let mut id = first.max(after.saturating_add(1));
        while id <= last && ids.len() < limit {
            ids.push(id);
            id += 1;
        }
        if ids.len() >= limit {
            break;
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(first: i64, last: i64) -> Run {
        Run { first, last }
    }

    #[test]
    fn ids_become_runs() {
        assert_eq!(
            runs(&[5, 3, 4, 9, 10, 4, 1]),
            [run(1, 1), run(3, 5), run(9, 10)]
        );
        assert!(runs(&[]).is_empty());
        assert_eq!(
            runs(&[i64::MAX, i64::MAX - 1]),
            [run(i64::MAX - 1, i64::MAX)]
        );
    }

    #[test]
    fn subtracting_cuts_runs_into_what_is_left() {
        assert_eq!(subtract(run(1, 10), &[run(1, 10)]), []);
        assert_eq!(subtract(run(1, 10), &[run(0, 20)]), []);
        assert_eq!(subtract(run(1, 10), &[run(11, 20)]), [run(1, 10)]);
        assert_eq!(
            subtract(run(1, 10), &[run(3, 4), run(7, 7)]),
            [run(1, 2), run(5, 6), run(8, 10)]
        );
        assert_eq!(subtract(run(1, 10), &[run(1, 5)]), [run(6, 10)]);
        assert_eq!(subtract(run(1, 10), &[run(6, 12)]), [run(1, 5)]);
        assert_eq!(subtract(run(5, 5), &[run(1, 2), run(5, 5), run(7, 8)]), []);
    }

    proptest::proptest! {
        #[test]
        fn subtraction_matches_sets(
            first in 0i64..40,
            len in 0i64..40,
            cut in proptest::collection::vec(0i64..90, 0..30),
        ) {
            let whole = run(first, first + len);
            let left = subtract(whole, &runs(&cut));
            let kept: Vec<i64> = left.iter().flat_map(|r| r.first..=r.last).collect();
            let expected: Vec<i64> =
                (whole.first..=whole.last).filter(|id| !cut.contains(id)).collect();
            proptest::prop_assert_eq!(kept, expected);
            proptest::prop_assert!(left.windows(2).all(|w| w[0].last + 1 < w[1].first));
        }
    }
}
