//! `warden logs --follow`: the server's record stream, printed as it comes.
//!
//! The stream's events carry cursors (`id:`); after a dropped connection the
//! follower reconnects with the last one (`Last-Event-ID`), so it neither
//! misses nor repeats a record, on this server or on another replica of the
//! same database. It retries until Ctrl-C, waiting longer between attempts
//! (up to [`MAX_BACKOFF`]) while the server is away; refusals that will not
//! go away by themselves (a wrong token, a bad filter) end it.

use std::time::Duration;

use warden_api::records::{EVENT_RECORD, RecordParams};
use warden_api::{ApiClient, ClientError};

use super::output::Output;
use crate::cmd::failure::{Failure, one_line};

/// Smallest column widths of a followed table, before any row is known:
/// time, workspace, decision, method.
pub const MIN_WIDTHS: &[usize] = &[24, 12, 9, 7];

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Follows from `cursor` until Ctrl-C.
pub async fn follow(
    client: &ApiClient,
    params: &RecordParams,
    mut cursor: String,
    out: &mut Output,
) -> Result<(), Failure> {
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut backoff = FIRST_BACKOFF;
    let mut lost: Option<String> = None;
    loop {
        let why = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            why = read(client, params, &mut cursor, out, &mut lost, &mut backoff) => why?,
        };
        if lost.is_none() {
            eprintln!("warden logs: {why}; reconnecting");
            lost = Some(why);
        }
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection: prints records until it ends; returns why it ended
/// (to retry) or a failure that retrying will not fix.
async fn read(
    client: &ApiClient,
    params: &RecordParams,
    cursor: &mut String,
    out: &mut Output,
    lost: &mut Option<String>,
    backoff: &mut Duration,
) -> Result<String, Failure> {
    let mut stream = match client.stream_records(params, Some(cursor)).await {
        Ok(stream) => stream,
        Err(e @ ClientError::Api { .. }) if !is_transient(&e) => return Err(e.into()),
        Err(e) => return Ok(one_line(&e)),
    };
    if lost.take().is_some() {
        eprintln!("warden logs: reconnected");
    }
    *backoff = FIRST_BACKOFF;
    loop {
        match stream.next().await {
            Ok(Some(event)) => {
                if event.event == EVENT_RECORD {
                    out.records([event.data.as_str()], MIN_WIDTHS)?;
                }
                // Position events move the cursor too.
                if let Some(id) = event.id {
                    *cursor = id;
                }
            }
            Ok(None) => return Ok("the server ended the stream".into()),
            Err(e) => return Ok(format!("the stream broke: {}", one_line(&e))),
        }
    }
}

/// A refusal that may pass: the server is shutting down or overloaded.
fn is_transient(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { status, .. } if status.is_server_error())
}
