//! The cursors of the record query API: positions the server hands out
//! (`next`, `head`, stream event ids) and reads back. Opaque to clients,
//! which pass them on exactly as received; their text form is the
//! server's to change.

use std::fmt;
use std::str::FromStr;

use warden_store::{RecordId, SequencePosition};

/// Why a cursor was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor {0:?}: pass a cursor exactly as the server returned it")]
pub struct CursorError(pub String);

/// A position in commit order: the `next` of a record page (newest first:
/// older records follow), the `head` to follow from, and the `id:` of every
/// stream event (newer records follow). Opaque to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordCursor(pub RecordId);

impl fmt::Display for RecordCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{:x}", self.0)
    }
}

impl FromStr for RecordCursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix('r')
            .filter(|hex| !hex.is_empty() && hex.len() <= 16)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .and_then(|n| RecordId::try_from(n).ok())
            .map(RecordCursor)
            .ok_or_else(|| CursorError(s.to_owned()))
    }
}

/// A position in a session's sequence order: the `next` of a session
/// report. Opaque to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionCursor(pub SequencePosition);

impl fmt::Display for SessionCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "q{}_{:x}", self.0.sequence_number, self.0.id)
    }
}

impl FromStr for SessionCursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CursorError(s.to_owned());
        let (seq, id) = s
            .strip_prefix('q')
            .and_then(|r| r.split_once('_'))
            .ok_or_else(bad)?;
        let sequence_number = seq.parse::<i32>().map_err(|_| bad())?;
        let id = u64::from_str_radix(id, 16)
            .ok()
            .and_then(|n| RecordId::try_from(n).ok())
            .ok_or_else(bad)?;
        Ok(SessionCursor(SequencePosition {
            sequence_number,
            id,
        }))
    }
}

/// A position in a workspace's session list (most recently stored-to
/// first): the `next` of a session list. Opaque to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionListCursor {
    /// The last record id of the last session listed (`None`: a session
    /// without stored records).
    pub last_record_id: Option<RecordId>,
    /// The last session listed.
    pub session_id: String,
}

impl fmt::Display for SessionListCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last_record_id {
            Some(id) => write!(f, "l{id:x}_")?,
            None => f.write_str("l-_")?,
        }
        f.write_str(&hex::encode(self.session_id.as_bytes()))
    }
}

impl FromStr for SessionListCursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CursorError(s.to_owned());
        let (id, session) = s
            .strip_prefix('l')
            .and_then(|r| r.split_once('_'))
            .ok_or_else(bad)?;
        let last_record_id = match id {
            "-" => None,
            hex => Some(
                u64::from_str_radix(hex, 16)
                    .ok()
                    .and_then(|n| RecordId::try_from(n).ok())
                    .ok_or_else(bad)?,
            ),
        };
        let session_id = hex::decode(session)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(bad)?;
        Ok(SessionListCursor {
            last_record_id,
            session_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        for id in [0, 1, 255, i64::MAX] {
            let c = RecordCursor(id);
            assert_eq!(c.to_string().parse::<RecordCursor>(), Ok(c));
        }
        for bad in [
            "",
            "r",
            "12",
            "rzz",
            "r-1",
            "r8000000000000000",
            "r00000000000000001",
        ] {
            assert!(bad.parse::<RecordCursor>().is_err(), "{bad:?}");
        }
        for (seq, id) in [(0, 1), (-5, 300), (i32::MAX, i64::MAX)] {
            let c = SessionCursor(SequencePosition {
                sequence_number: seq,
                id,
            });
            assert_eq!(c.to_string().parse::<SessionCursor>(), Ok(c));
        }
        for bad in ["q", "q1", "q1_", "qx_1", "r1_1"] {
            assert!(bad.parse::<SessionCursor>().is_err(), "{bad:?}");
        }
        for c in [
            SessionListCursor {
                last_record_id: Some(42),
                session_id: "a_b-é".into(),
            },
            SessionListCursor {
                last_record_id: None,
                session_id: String::new(),
            },
        ] {
            assert_eq!(c.to_string().parse::<SessionListCursor>(), Ok(c.clone()));
        }
        for bad in ["l", "l1", "lx_00", "l1_zz", "l1_ff"] {
            assert!(bad.parse::<SessionListCursor>().is_err(), "{bad:?}");
        }
    }
}
