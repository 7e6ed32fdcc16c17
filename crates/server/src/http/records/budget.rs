//! Record pages within a byte budget: a page of records is read from the
//! store a few records at a time and written out as JSON as it comes, and
//! it ends early, with a `next` cursor, once its JSON reaches the budget
//! (`--max-response-bytes`). So `?limit=1000` over records with huge URLs
//! gives a page of a few MiB and a way to page on, instead of a body that
//! holds every record at once; and the records read from the store at any
//! moment are a few ([`FIRST_CHUNK`]) or about one budget's worth (their
//! size known from those), not `limit` of them.
//!
//! A page always holds at least one record (when one matches), however
//! large: otherwise a record bigger than the budget could never be read.

use serde_json::value::RawValue;
use warden_store::{StoreError, StoredRecord};

use super::RecordOut;

/// Records read from the store by the first query of a page: few, since
/// nothing yet says how large they are.
const FIRST_CHUNK: u32 = 8;
/// The most records one query reads.
const MAX_CHUNK: u32 = 256;

/// A page's records as JSON, and where it ended.
#[derive(Debug)]
pub(crate) struct RecordsJson {
    /// The record objects.
    pub records: Vec<Box<RawValue>>,
    /// Their JSON as an array: the records, their commas and brackets.
    pub bytes: usize,
    /// How many records there are.
    pub count: u32,
    /// The first record's id.
    pub first_id: Option<i64>,
    /// The last record in the array, to continue after.
    pub last: Option<StoredRecord>,
    /// Whether the page stopped before the records ran out: it holds
    /// `limit` records, or the byte budget ended it.
    pub more: bool,
}

/// Reads records with `fetch(after, n)` (up to `n` records following
/// `after`, the last record of the previous read; `None` for the first),
/// until `limit` records are written, the records run out, or the JSON is
/// `budget` bytes long.
pub(crate) async fn records_json<F>(
    limit: u32,
    budget: usize,
    mut fetch: impl FnMut(Option<&StoredRecord>, u32) -> F,
) -> Result<RecordsJson, RecordsError>
where
    F: Future<Output = Result<Vec<StoredRecord>, StoreError>>,
{
    let mut out = RecordsJson {
        records: Vec::new(),
        // The brackets.
        bytes: 2,
        count: 0,
        first_id: None,
        last: None,
        more: false,
    };
    let mut chunk = FIRST_CHUNK.min(limit);
    while out.count < limit {
        let asked = chunk.min(limit - out.count);
        let records = fetch(out.last.as_ref(), asked).await?;
        let exhausted = (records.len() as u64) < u64::from(asked);
        for record in records {
            let json = serde_json::value::to_raw_value(&RecordOut::new(&record))
                .map_err(RecordsError::Encode)?;
            // A comma before every record but the first.
            let bytes = json.get().len() + usize::from(out.count > 0);
            if out.bytes + bytes > budget && out.count > 0 {
                out.more = true;
                return Ok(out);
            }
            out.bytes += bytes;
            out.records.push(json);
            out.count += 1;
            out.first_id.get_or_insert(record.id);
            out.last = Some(record);
        }
        if exhausted {
            return Ok(out);
        }
        // Enough records for what is left of the budget, going by their
        // average size so far.
        let average = (out.bytes / out.count.max(1) as usize).max(1);
        let fits = budget.saturating_sub(out.bytes) / average + 1;
        chunk = u32::try_from(fits).unwrap_or(MAX_CHUNK).clamp(1, MAX_CHUNK);
    }
    // A full page: more may match.
    out.more = true;
    Ok(out)
}

/// Why a page could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordsError {
    /// Reading records failed.
    #[error("reading records")]
    Store(#[from] StoreError),
    /// A record could not be written as JSON.
    #[error("encoding a record")]
    Encode(#[source] serde_json::Error),
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use uuid::Uuid;
    use warden_proto::domain::{Decision, EventTime, Peer};

    use super::*;

    fn record(id: i64, url_len: usize) -> StoredRecord {
        StoredRecord {
            id,
            workspace_id: Uuid::nil(),
            workspace_name: "dev".into(),
            workspace_owner: "alice".into(),
            agent_id: Uuid::nil(),
            agent_name: "main".into(),
            batch_id: Uuid::nil(),
            session_id: None,
            sequence_number: 0,
            event_time: EventTime::Missing,
            received_at: Timestamp::UNIX_EPOCH,
            agent_received_at: Timestamp::UNIX_EPOCH,
            agent_time_suspect: false,
            committed_at: Timestamp::UNIX_EPOCH,
            decision: Decision::Allow,
            method: "GET".into(),
            url: format!("https://example.com/{}", "a".repeat(url_len)),
            url_original_bytes: None,
            matched_rule: String::new(),
            process: String::new(),
            peer: Peer::default(),
            policy_digest: None,
            conflict: false,
        }
    }

    /// Records `n..1`, newest first, each with a URL of `url_len` bytes;
    /// returns the page and the largest read the store was asked for.
    async fn read_page(n: i64, url_len: usize, limit: u32, budget: usize) -> (RecordsJson, u32) {
        let mut largest = 0;
        let page = records_json(limit, budget, |after: Option<&StoredRecord>, asked| {
            largest = largest.max(asked);
            let below = after.map_or(n + 1, |r| r.id);
            let records = (1..below)
                .rev()
                .take(asked as usize)
                .map(|id| record(id, url_len))
                .collect();
            std::future::ready(Ok(records))
        })
        .await
        .unwrap();
        (page, largest)
    }

    fn ids(page: &RecordsJson) -> Vec<i64> {
        let text = serde_json::to_string(&page.records).unwrap();
        assert_eq!(text.len(), page.bytes);
        let v: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        v.iter().map(|r| r["id"].as_i64().unwrap()).collect()
    }

    #[tokio::test]
    async fn small_records_fill_the_page_to_its_limit() {
        let (page, _) = read_page(2000, 10, 1000, 4 << 20).await;
        assert_eq!(page.count, 1000);
        assert!(page.more);
        assert_eq!(ids(&page), (1001..=2000).rev().collect::<Vec<_>>());
        assert_eq!(page.first_id, Some(2000));
        assert_eq!(page.last.unwrap().id, 1001);

        let (page, _) = read_page(5, 10, 1000, 4 << 20).await;
        assert_eq!(ids(&page), [5, 4, 3, 2, 1]);
        assert!(!page.more);
        let (page, _) = read_page(0, 10, 1000, 4 << 20).await;
        assert!(ids(&page).is_empty());
        assert!(!page.more);
    }

    #[tokio::test]
    async fn large_records_end_the_page_at_the_budget_and_are_read_a_few_at_a_time() {
        // 40 records of 1 MiB each, a 4 MiB budget: 3 fit.
        let (page, _) = read_page(40, 1 << 20, 1000, 4 << 20).await;
        assert_eq!(ids(&page), [40, 39, 38]);
        assert!(page.more, "the byte budget ended the page: there is a next");
        assert!(page.bytes <= 4 << 20);
        // 100 KiB records: about 40 fit, and after the first few, reads
        // are sized by what is left of the budget, not by the limit.
        let (page, largest) = read_page(1000, 100 << 10, 1000, 4 << 20).await;
        assert!((39..=41).contains(&page.count), "{}", page.count);
        assert!(page.more);
        assert!(largest <= 41, "read {largest} records at once");
        // One record larger than the budget still comes, alone.
        let (page, _) = read_page(3, 1 << 20, 1000, 1000).await;
        assert_eq!(ids(&page), [3]);
        assert!(page.more);
    }
}
