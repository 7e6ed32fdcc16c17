//! The spool's configuration and its validation.

use std::path::PathBuf;
use std::time::Duration;

use crate::SpoolError;
use crate::format::ENTRY_HEADER_LEN;

/// Default bound on the bytes kept on disk: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Default size at which a segment file is closed and a new one started: 8 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Smallest accepted bound.
pub const MIN_MAX_BYTES: u64 = 1024;
/// Most entry bytes kept in memory to serve reads without touching the disk.
const MAX_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Largest bound the byte semaphore can represent.
const MAX_MAX_BYTES: u64 = (usize::MAX >> 3) as u64;

/// How a spool is set up. Checked by [`crate::Spool::open`] before any I/O.
#[derive(Clone, Debug)]
pub struct SpoolConfig {
    /// Directory holding the segment files, the acknowledgement log and the
    /// lock file. Created if missing; one spool per directory.
    pub dir: PathBuf,
    /// Bound on the entry bytes kept in segment files (frames of acknowledged
    /// entries count until their segment is deleted; segment headers, 24
    /// bytes each, do not). At least [`MIN_MAX_BYTES`].
    pub max_bytes: u64,
    /// A segment is closed once the next append would take it past this
    /// size. Acknowledgements free disk space a whole segment at a time, so
    /// the effective size is at most `max_bytes / 8`.
    pub segment_bytes: u64,
    /// What an append does when the bound is reached.
    pub full_policy: FullPolicy,
    /// What the drop ledger keeps of an entry [`FullPolicy::DropOldest`]
    /// drops, made from the entry's data before it goes: whatever the caller
    /// needs to report the loss (which records, whose). Summaries should be
    /// small: they stay on disk, counted against `max_bytes`, until the
    /// caller settles the drop. At most [`MAX_SUMMARY_BYTES`] are kept. The
    /// default keeps nothing (the ledger still has each entry's id and
    /// record count).
    pub drop_summary: fn(&[u8]) -> Vec<u8>,
    /// How long a small append (less than 256 KiB gathered) may wait for
    /// other appends to share its write and fsync: fewer, larger fsyncs at a
    /// low steady rate, for at most this much more latency. Large appends
    /// and a full group go at once. Default: none.
    pub commit_delay: Duration,
}

/// Most bytes of a drop summary the ledger keeps.
pub const MAX_SUMMARY_BYTES: usize = 1 << 20;

/// The default [`SpoolConfig::drop_summary`]: nothing.
pub fn no_summary(_data: &[u8]) -> Vec<u8> {
    Vec::new()
}

/// What an append does when the spool is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullPolicy {
    /// Wait until acknowledgements free enough room.
    Backpressure,
    /// Drop the oldest unacknowledged entries (whole segments) to make room,
    /// report what was dropped in [`crate::Appended::dropped`], and keep a
    /// durable record of each dropped entry in the drop ledger until the
    /// caller settles it ([`crate::Spool::read_dropped`]).
    DropOldest,
}

impl SpoolConfig {
    /// A 256 MiB spool in `dir` with 8 MiB segments and backpressure.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpoolConfig {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            full_policy: FullPolicy::Backpressure,
            drop_summary: no_summary,
            commit_delay: Duration::ZERO,
        }
    }

    /// Checks the configuration before any I/O.
    pub(crate) fn validate(&self) -> Result<(), SpoolError> {
        if self.dir.as_os_str().is_empty() {
            return Err(SpoolError::InvalidConfig(
                "the spool directory is empty".into(),
            ));
        }
        if self.max_bytes < MIN_MAX_BYTES || self.max_bytes > MAX_MAX_BYTES {
            return Err(SpoolError::InvalidConfig(format!(
                "max_bytes must be between {MIN_MAX_BYTES} and {MAX_MAX_BYTES}, not {}",
                self.max_bytes
            )));
        }
        if self.segment_bytes == 0 {
            return Err(SpoolError::InvalidConfig(
                "segment_bytes must not be zero".into(),
            ));
        }
        Ok(())
    }

    /// The segment size actually used (see [`SpoolConfig::segment_bytes`]).
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.min(self.max_bytes / 8).max(1)
    }

    /// Most bytes the drop ledger may take (a quarter of the bound): past
    /// that, nothing more is dropped until drops are settled, and appends
    /// wait as under backpressure.
    pub(crate) fn ledger_cap(&self) -> u64 {
        self.max_bytes / 4
    }

    /// Entry bytes kept in memory for reads.
    pub(crate) fn cache_bytes(&self) -> u64 {
        self.max_bytes.min(MAX_CACHE_BYTES)
    }

    /// Largest frame one entry may have.
    pub(crate) fn max_frame_bytes(&self) -> u64 {
        self.max_bytes
            .min(ENTRY_HEADER_LEN as u64 + u64::from(u32::MAX))
    }

    /// Largest total of frames one append call may have: the bound, and what
    /// one reservation of the byte semaphore can take.
    pub(crate) fn max_append_bytes(&self) -> u64 {
        self.max_bytes.min(u64::from(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let config = SpoolConfig::new("/tmp/x");
        assert_eq!(config.max_bytes, 256 * 1024 * 1024);
        assert_eq!(config.segment_bytes, 8 * 1024 * 1024);
        assert_eq!(config.full_policy, FullPolicy::Backpressure);
        config.validate().unwrap();
        assert_eq!(config.effective_segment_bytes(), 8 * 1024 * 1024);
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let mut config = SpoolConfig::new("/tmp/x");
        config.max_bytes = 10;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("max_bytes")
        );
        config.max_bytes = u64::MAX;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("max_bytes")
        );
        config.max_bytes = DEFAULT_MAX_BYTES;
        config.segment_bytes = 0;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("segment_bytes")
        );
        let empty = SpoolConfig::new("");
        assert!(
            empty
                .validate()
                .unwrap_err()
                .to_string()
                .contains("directory")
        );
    }

    #[test]
    fn segments_shrink_with_a_small_bound() {
        let mut config = SpoolConfig::new("/tmp/x");
        config.max_bytes = 4 * 1024 * 1024;
        assert_eq!(config.effective_segment_bytes(), 512 * 1024);
    }
}
