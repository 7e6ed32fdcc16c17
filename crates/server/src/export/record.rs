//! What every export format is made from: one record, borrowed from a
//! [`StoredRecord`] (the sinks) or from the query API's [`Record`] (`warden
//! logs --format ocsf`), so that both print the same thing.

use jiff::Timestamp;
use uuid::Uuid;
use warden_api::records::Record;
use warden_proto::domain::Decision;
use warden_store::StoredRecord;

/// The socket peer that wrote a record to the agent.
#[derive(Clone, Debug)]
pub struct ExportPeer<'a> {
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// Its pid (0 when unknown).
    pub pid: i32,
    /// Its command name (empty when unknown).
    pub comm: &'a str,
    /// Its executable (empty when unknown).
    pub exe: &'a str,
}

/// One record as the exports see it.
#[derive(Clone, Debug)]
pub struct ExportRecord<'a> {
    /// Warden's record id (commit order): receivers drop repeats by it.
    pub id: i64,
    /// The workspace of the agent that delivered it.
    pub workspace_id: Uuid,
    /// That workspace's name (empty when unknown).
    pub workspace_name: &'a str,
    /// Its owner (empty when unknown).
    pub workspace_owner: &'a str,
    /// The delivering agent's name (empty when unknown).
    pub agent_name: &'a str,
    /// Allowed or denied.
    pub decision: Decision,
    /// The HTTP method, as sent.
    pub method: &'a str,
    /// The URL as stored.
    pub url: &'a str,
    /// The URL's length as sent when `url` holds only its first bytes.
    pub url_original_bytes: Option<u64>,
    /// When boundary decided, when it said.
    pub event_time: Option<Timestamp>,
    /// When the control plane received it.
    pub received_at: Timestamp,
    /// The client session, when it sent one.
    pub session_id: Option<&'a str>,
    /// Its number in the session.
    pub sequence_number: i32,
    /// The rule that allowed it (empty for none).
    pub matched_rule: &'a str,
    /// The `confined_process_name` the client sent (empty for none).
    pub process: &'a str,
    /// The socket peer.
    pub peer: ExportPeer<'a>,
    /// The digest of the policy it was decided under, when known.
    pub policy_digest: Option<&'a str>,
    /// Its session key was used before by a record with other content.
    pub conflict: bool,
}

impl<'a> ExportRecord<'a> {
    /// A stored record.
    pub fn stored(r: &'a StoredRecord) -> Self {
        ExportRecord {
            id: r.id,
            workspace_id: r.workspace_id,
            workspace_name: &r.workspace_name,
            workspace_owner: &r.workspace_owner,
            agent_name: &r.agent_name,
            decision: r.decision,
            method: &r.method,
            url: &r.url,
            url_original_bytes: r.url_original_bytes,
            event_time: r.event_time.known(),
            received_at: r.received_at,
            session_id: r.session_id.as_deref(),
            sequence_number: r.sequence_number,
            matched_rule: &r.matched_rule,
            process: &r.process,
            peer: ExportPeer {
                uid: r.peer.uid,
                gid: r.peer.gid,
                pid: r.peer.pid,
                comm: &r.peer.comm,
                exe: &r.peer.exe,
            },
            policy_digest: r.policy_digest.as_deref(),
            conflict: r.conflict,
        }
    }

    /// A record as the query API returns it.
    pub fn api(r: &'a Record) -> Self {
        ExportRecord {
            id: r.id,
            workspace_id: r.workspace_id,
            workspace_name: r.workspace_name.as_deref().unwrap_or(""),
            workspace_owner: r.workspace_owner.as_deref().unwrap_or(""),
            agent_name: r.agent_name.as_deref().unwrap_or(""),
            decision: if r.decision == "allow" {
                Decision::Allow
            } else {
                Decision::Deny
            },
            method: &r.http_method,
            url: &r.http_url,
            url_original_bytes: r.http_url_bytes,
            event_time: r.event_time,
            received_at: r.received_at,
            session_id: r.session_id.as_deref(),
            sequence_number: r.sequence.unwrap_or(0),
            matched_rule: r.matched_rule.as_deref().unwrap_or(""),
            process: r.process.as_deref().unwrap_or(""),
            peer: ExportPeer {
                uid: r.peer.uid,
                gid: r.peer.gid,
                pid: r.peer.pid,
                comm: &r.peer.comm,
                exe: &r.peer.exe,
            },
            policy_digest: r.policy_digest.as_deref(),
            conflict: r.conflict,
        }
    }

    /// The event time, or the receive time when boundary sent none.
    pub fn time(&self) -> Timestamp {
        self.event_time.unwrap_or(self.received_at)
    }

    /// The URL's host and port (the scheme's default when none is given),
    /// when the URL has a host.
    pub fn server(&self) -> Option<(String, Option<u16>)> {
        let url = url::Url::parse(self.url).ok()?;
        let host = url.host_str()?.trim_matches(['[', ']']).to_owned();
        Some((host, url.port_or_known_default()))
    }
}
