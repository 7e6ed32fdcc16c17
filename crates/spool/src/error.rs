//! The spool's error type.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// What can go wrong with a spool. Cloneable so that one failed group commit
/// can answer every append it carried.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file-system operation failed.
    #[error("spool i/o failed: {op} {}", path.display())]
    Io {
        /// What the spool was doing, e.g. "fsync segment".
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// Why it failed (EACCES, ENOSPC, ...): whoever prints the error
        /// prints its chain, so the reason is never lost.
        #[source]
        source: Arc<io::Error>,
    },
    /// One entry is bigger than the whole spool may hold.
    #[error(
        "entry of {size} bytes (with its frame) exceeds the largest allowed entry of {max} bytes"
    )]
    EntryTooLarge {
        /// The entry's frame size.
        size: u64,
        /// The largest allowed.
        max: u64,
    },
    /// The entries of one append together are bigger than the spool may hold.
    #[error("append of {size} bytes exceeds the largest allowed append of {max} bytes")]
    AppendTooLarge {
        /// The append's size.
        size: u64,
        /// The largest allowed.
        max: u64,
    },
    /// Another spool (in this or another process) uses the directory.
    #[error("spool directory {} is locked by another spool", dir.display())]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// The configuration is unusable.
    #[error("invalid spool configuration: {0}")]
    InvalidConfig(String),
    /// The spool was closed (or its writer stopped); nothing more can be done with it.
    #[error("spool is closed")]
    Closed,
}

impl SpoolError {
    pub(crate) fn io(op: &'static str, path: PathBuf, source: io::Error) -> Self {
        SpoolError::Io {
            op,
            path,
            source: Arc::new(source),
        }
    }

    /// Whether the error is the disk being full (ENOSPC), which acknowledgements may cure.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, SpoolError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
    }
}
