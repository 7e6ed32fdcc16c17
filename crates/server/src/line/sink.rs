//! Where boundary lines go: stderr in production, anything that can take
//! bytes in tests and benches.

use std::io::{self, Write};
use std::sync::Mutex;

/// Takes whole lines. Each call gets complete lines only and must write them
/// with one locked write, so they never interleave with other output.
pub trait LineSink: Send + Sync + 'static {
    fn write_lines(&self, lines: &[u8]) -> io::Result<()>;
}

/// The process's stderr. It holds the same lock `tracing`'s writer takes
/// for each event, so a boundary line and an operational line never mix.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stderr;

impl LineSink for Stderr {
    fn write_lines(&self, lines: &[u8]) -> io::Result<()> {
        let mut stderr = io::stderr().lock();
        stderr.write_all(lines)?;
        stderr.flush()
    }
}

/// Any writer (a file, a buffer), flushed after every call.
#[derive(Debug)]
pub struct WriterSink<W>(Mutex<W>);

impl<W: Write + Send + 'static> WriterSink<W> {
    pub fn new(writer: W) -> Self {
        WriterSink(Mutex::new(writer))
    }

    /// The writer back (to read a buffer in a test).
    pub fn into_inner(self) -> W {
        self.0
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<W: Write + Send + 'static> LineSink for WriterSink<W> {
    fn write_lines(&self, lines: &[u8]) -> io::Result<()> {
        let mut writer = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        writer.write_all(lines)?;
        writer.flush()
    }
}
