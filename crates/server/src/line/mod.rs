//! The boundary log line: one line on stderr per committed record, formatted
//! per `docs/stderr-format.md`, printed once, after the commit.
//!
//! - [`format`]: the text and JSON forms.
//! - [`quote`]: Go's `%q` quoting, which keeps a line from being forged
//!   (`warden_proto::quote`, shared with the agent).
//! - [`sink`]: where lines go (stderr, or anything in tests).
//! - [`printer`]: the printing thread and the outbox protocol.

pub mod format;
pub mod printer;
pub mod sink;

pub use warden_proto::quote;

pub use format::{LineFormat, LineRecord, write_line};
pub use printer::{PrintQueue, Printer};
pub use sink::{LineSink, Stderr, WriterSink};
