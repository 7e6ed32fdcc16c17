//! Session completeness verdicts as the store keeps them: a signed
//! statement about one session (what was stored, what was reported lost,
//! whether the client said where it ended) at a position of the record
//! chain. The store keeps the bytes; making, signing and checking them is
//! `warden_evidence::verdict`'s business.
//!
//! Verdicts are only ever added: a later one for the same session (a late
//! drop report, records that arrived after it) supersedes the earlier one,
//! which stays, so no verdict changes silently.

use uuid::Uuid;

use crate::model::RecordId;

/// One stored verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionVerdict {
    /// Its position among stored verdicts, store-wide (0 before it is
    /// stored).
    pub id: i64,
    /// The workspace of the session.
    pub workspace_id: Uuid,
    /// The client's session id.
    pub session_id: String,
    /// The last record id the chain covered when it was made: records of
    /// the session with higher ids came after it.
    pub last_id: RecordId,
    /// When it was made, Unix nanoseconds.
    pub made_ns: i64,
    /// The signed statement (text; see `warden_evidence::verdict`).
    pub statement: String,
    /// The signing key's id.
    pub key_id: String,
    /// The signing key's public half.
    pub public_key: Vec<u8>,
    /// The signature over `statement`.
    pub signature: Vec<u8>,
}

/// A session that has changed since its latest verdict (or never had one):
/// records with ids after the verdict's `last_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionKey {
    /// The workspace.
    pub workspace_id: Uuid,
    /// The client's session id.
    pub session_id: String,
}
