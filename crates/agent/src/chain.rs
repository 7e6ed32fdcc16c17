//! Errors in log lines: a message says what was being done and leaves its
//! cause to its `#[source]`, so whoever writes an error down writes its
//! whole chain, once ([`display`]): an EACCES or ENOSPC under a spool error
//! is never lost.

use std::fmt::Write;

/// An error and its causes, `: `-separated, for a log line.
pub fn display(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(out, ": {cause}");
        source = cause.source();
    }
    out
}
