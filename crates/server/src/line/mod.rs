//! The boundary log line: one line on stderr per committed record, formatted
//! per `docs/stderr-format.md`, printed once, after the commit.
//!
//! - [`format`]: the text and JSON forms.
//! - [`quote`]: Go's `%q` quoting, which keeps a line from being forged.
//! - [`sink`]: where lines go (stderr, or anything in tests).
//! - [`printer`]: the printing thread and the outbox protocol.

pub mod format;
mod printable;
pub mod printer;
pub mod quote;
pub mod sink;

pub use format::{LineFormat, LineRecord, write_line};
pub use printer::{PrintQueue, Printer};
pub use sink::{LineSink, Stderr, WriterSink};
