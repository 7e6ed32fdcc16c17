//! At start: print the lines of records committed before the last stop
//! whose printing the store has not noted (the process died between commit
//! and print, or between print and the note). They are marked as replays
//! (`replayed=true`): some may have been printed just before the stop.

use warden_store::{Store, StoreError};

use crate::line::{LineFormat, LineRecord, PrintQueue, write_line};

/// Records read per page.
const PAGE: u32 = 1000;

/// Queues every unprinted line; returns how many there were. Must finish
/// before ingest starts, or a line could be read here and printed by ingest
/// too.
pub async fn replay(
    store: &dyn Store,
    queue: &PrintQueue,
    format: LineFormat,
) -> Result<u64, StoreError> {
    let mut cursor = None;
    let mut total = 0u64;
    loop {
        let page = store.unprinted_records(cursor, PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.id);
        let mut lines = String::with_capacity(page.len() * 320);
        for record in &page {
            write_line(&mut lines, format, &LineRecord::stored(record).replayed());
        }
        total += page.len() as u64;
        queue
            .print(lines, page.iter().map(|r| r.id).collect())
            .await;
    }
    if total > 0 {
        tracing::info!(
            lines = total,
            "printing boundary lines of records committed before the last stop"
        );
    }
    Ok(total)
}
