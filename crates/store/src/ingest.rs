//! What both backends' ingest shares beyond [`crate::group`]: checking
//! policy digests, and waking followers after a commit.

use crate::model::{IngestOutcome, RecordId};

/// A policy digest as `warden boundary` sends it: lower-case hex SHA-256.
pub(crate) fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lower-case hex SHA-256 of `text`.
pub(crate) fn hex_sha256(text: &str) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let mut out = String::with_capacity(64);
    for byte in Sha256::digest(text.as_bytes()) {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Tells followers of [`Store::local_commits`](crate::Store::local_commits)
/// about the records an ingest committed (only when it moved the position).
pub(crate) fn notify_commits(
    commits: &tokio::sync::watch::Sender<RecordId>,
    outcome: &IngestOutcome,
) {
    if let Some(&last) = outcome.record_ids.iter().max() {
        commits.send_if_modified(|seen| {
            let newer = last > *seen;
            *seen = (*seen).max(last);
            newer
        });
    }
}
