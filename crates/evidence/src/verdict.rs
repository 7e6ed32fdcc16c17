//! Session completeness verdicts: whether every record a client session
//! assigned is accounted for, signed at a position of the record chain.
//!
//! A session is
//! - **complete** when the client reported its final sequence number and a
//!   record is stored for every number from 0 through it;
//! - **complete except reported drops** when it reported its end and every
//!   missing number is covered by a loss someone reported (the client's own
//!   drops, the agent's, records the control plane refused);
//! - **incomplete** otherwise: numbers are missing that nobody explains, or
//!   the client never said where it ended (*no end reported*: reference
//!   clients never do, so such a session is judged after it has been idle).
//!
//! The signed statement is text, one field a line, so an auditor can
//! rebuild it by hand (each line ends with `\n`; the session id, which the
//! client chose, is hex-encoded so that it cannot break a line):
//!
//! ```text
//! warden session verdict v1
//! workspace <uuid>
//! session <hex of the session id's bytes>
//! verdict complete | complete-except-reported-drops | incomplete
//! final-sequence <n | none>
//! records <stored, conflicts included>
//! conflicts <n>
//! first-sequence <n | none>
//! last-sequence <n | none>
//! missing <n>
//! client-lost <n>
//! agent-lost <n>
//! server-lost <n>
//! unexplained <n>
//! purged <n>
//! link <chain link seq>
//! last-record <record id>
//! head <64 hex digits>
//! supersedes <verdict id | none>
//! time <Unix nanoseconds>
//! key <key id>
//! ```
//!
//! `link`, `last-record` and `head` say where the chain stood: the verdict
//! is about the records committed up to there, and a checker holding the
//! chain confirms that link had that head. A later verdict for the session
//! names the one it supersedes; both stay stored.

use std::collections::HashMap;

use uuid::Uuid;
use warden_store::chain::{ChainLink, Hash};
use warden_store::verdict::SessionVerdict;
use warden_store::{LossSource, SessionSummary};

use crate::EvidenceError;
use crate::key::{PublicKey, SigningKey};

/// The first line of every statement.
const HEADER: &str = "warden session verdict v1";

/// What a session's records add up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completeness {
    /// Every number through the reported final one is stored.
    Complete,
    /// The end was reported and every missing number was reported lost.
    CompleteExceptReportedDrops,
    /// Numbers are missing that nobody explains, or no end was reported.
    Incomplete,
}

impl Completeness {
    /// As written in statements and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Completeness::Complete => "complete",
            Completeness::CompleteExceptReportedDrops => "complete-except-reported-drops",
            Completeness::Incomplete => "incomplete",
        }
    }

    fn parse(text: &str) -> Option<Completeness> {
        [
            Completeness::Complete,
            Completeness::CompleteExceptReportedDrops,
            Completeness::Incomplete,
        ]
        .into_iter()
        .find(|c| c.as_str() == text)
    }
}

/// The numbers a verdict states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The workspace.
    pub workspace_id: Uuid,
    /// The client's session id.
    pub session_id: String,
    /// The final sequence number the client reported (-1: it assigned none).
    pub final_sequence: Option<i64>,
    /// Records stored, conflicts included (purged ones too).
    pub records: u64,
    /// Of them, conflicting copies.
    pub conflicts: u64,
    /// The lowest sequence number stored.
    pub first_sequence: Option<i32>,
    /// The highest sequence number stored.
    pub last_sequence: Option<i32>,
    /// Numbers up to the last known one that no stored record carries.
    pub missing: u64,
    /// Records the client reported dropping.
    pub client_lost: u64,
    /// Records the workspace agent reported losing.
    pub agent_lost: u64,
    /// Records the control plane refused.
    pub server_lost: u64,
    /// Missing numbers no report explains.
    pub unexplained: u64,
    /// Stored records retention has deleted since.
    pub purged: u64,
}

impl Facts {
    /// The facts of a session summary.
    pub fn of(summary: &SessionSummary) -> Facts {
        let lost = |source: LossSource| {
            summary
                .losses
                .iter()
                .filter(|l| l.source == source)
                .map(|l| l.records)
                .sum()
        };
        Facts {
            workspace_id: summary.workspace_id,
            session_id: summary.session_id.clone(),
            final_sequence: summary.final_sequence_number,
            records: summary.records,
            conflicts: summary.conflicts,
            first_sequence: summary.first_sequence_number,
            last_sequence: summary.last_sequence_number,
            missing: summary.missing(),
            client_lost: lost(LossSource::Client),
            agent_lost: lost(LossSource::Agent),
            server_lost: lost(LossSource::Server),
            unexplained: summary.unexplained(),
            purged: summary.purged,
        }
    }

    /// The verdict these facts call for.
    pub fn judge(&self) -> Completeness {
        match self.final_sequence {
            None => Completeness::Incomplete,
            Some(_) if self.missing == 0 => Completeness::Complete,
            Some(_) if self.unexplained == 0 => Completeness::CompleteExceptReportedDrops,
            Some(_) => Completeness::Incomplete,
        }
    }
}

/// A verdict as read back from its statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// What it states about the session.
    pub facts: Facts,
    /// Its verdict.
    pub completeness: Completeness,
    /// The chain link it was made at.
    pub link: i64,
    /// The last record id the chain covered then.
    pub last_id: i64,
    /// That link's head.
    pub head: Hash,
    /// The verdict it supersedes.
    pub supersedes: Option<i64>,
    /// When it was made, Unix nanoseconds.
    pub made_ns: i64,
    /// The signing key's id.
    pub key_id: String,
}

impl Statement {
    /// The signed text.
    pub fn text(&self) -> String {
        let f = &self.facts;
        let opt = |n: Option<String>| n.unwrap_or_else(|| "none".into());
        format!(
            "{HEADER}\nworkspace {}\nsession {}\nverdict {}\nfinal-sequence {}\nrecords {}\n\
             conflicts {}\nfirst-sequence {}\nlast-sequence {}\nmissing {}\nclient-lost {}\n\
             agent-lost {}\nserver-lost {}\nunexplained {}\npurged {}\nlink {}\nlast-record {}\n\
             head {}\nsupersedes {}\ntime {}\nkey {}\n",
            f.workspace_id,
            hex::encode(f.session_id.as_bytes()),
            self.completeness.as_str(),
            opt(f.final_sequence.map(|n| n.to_string())),
            f.records,
            f.conflicts,
            opt(f.first_sequence.map(|n| n.to_string())),
            opt(f.last_sequence.map(|n| n.to_string())),
            f.missing,
            f.client_lost,
            f.agent_lost,
            f.server_lost,
            f.unexplained,
            f.purged,
            self.link,
            self.last_id,
            hex::encode(self.head),
            opt(self.supersedes.map(|n| n.to_string())),
            self.made_ns,
            self.key_id,
        )
    }

    /// Reads a statement back; anything but the exact form is refused.
    pub fn parse(text: &str) -> Result<Statement, EvidenceError> {
        let bad = |why: &str| EvidenceError::Malformed(format!("session verdict: {why}"));
        let mut lines = text.split_terminator('\n');
        if lines.next() != Some(HEADER) {
            return Err(bad("not a v1 statement"));
        }
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for line in lines {
            let (key, value) = line
                .split_once(' ')
                .ok_or_else(|| bad("a line without a value"))?;
            if fields.insert(key, value).is_some() {
                return Err(bad("a field given twice"));
            }
        }
        let field = |key: &str| fields.get(key).copied().ok_or_else(|| bad(key));
        fn num<T: std::str::FromStr>(text: &str) -> Option<T> {
            text.parse().ok()
        }
        fn opt_num<T: std::str::FromStr>(text: &str) -> Option<Option<T>> {
            if text == "none" {
                Some(None)
            } else {
                text.parse().ok().map(Some)
            }
        }
        let n = |key: &str| field(key).and_then(|v| num::<u64>(v).ok_or_else(|| bad(key)));
        let session = hex::decode(field("session")?)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad("session"))?;
        let facts = Facts {
            workspace_id: field("workspace")?.parse().map_err(|_| bad("workspace"))?,
            session_id: session,
            final_sequence: opt_num(field("final-sequence")?)
                .ok_or_else(|| bad("final-sequence"))?,
            records: n("records")?,
            conflicts: n("conflicts")?,
            first_sequence: opt_num(field("first-sequence")?)
                .ok_or_else(|| bad("first-sequence"))?,
            last_sequence: opt_num(field("last-sequence")?).ok_or_else(|| bad("last-sequence"))?,
            missing: n("missing")?,
            client_lost: n("client-lost")?,
            agent_lost: n("agent-lost")?,
            server_lost: n("server-lost")?,
            unexplained: n("unexplained")?,
            purged: n("purged")?,
        };
        let head: Hash = hex::decode(field("head")?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("head"))?;
        let statement = Statement {
            completeness: Completeness::parse(field("verdict")?).ok_or_else(|| bad("verdict"))?,
            link: num(field("link")?).ok_or_else(|| bad("link"))?,
            last_id: num(field("last-record")?).ok_or_else(|| bad("last-record"))?,
            head,
            supersedes: opt_num(field("supersedes")?).ok_or_else(|| bad("supersedes"))?,
            made_ns: num(field("time")?).ok_or_else(|| bad("time"))?,
            key_id: field("key")?.to_owned(),
            facts,
        };
        if fields.len() != 20 {
            return Err(bad("unknown fields"));
        }
        if statement.text() != text {
            return Err(bad("not in the canonical form"));
        }
        Ok(statement)
    }
}

/// Judges `summary` at chain `link` (whose records end at `last_id`),
/// superseding verdict `supersedes`, and signs the statement now.
pub fn sign(
    key: &SigningKey,
    summary: &SessionSummary,
    link: &ChainLink,
    last_id: i64,
    supersedes: Option<i64>,
    made_ns: i64,
) -> SessionVerdict {
    let public = key.public_key();
    let facts = Facts::of(summary);
    let statement = Statement {
        completeness: facts.judge(),
        facts,
        link: link.seq,
        last_id,
        head: link.head,
        supersedes,
        made_ns,
        key_id: public.key_id(),
    };
    let text = statement.text();
    SessionVerdict {
        id: 0,
        workspace_id: summary.workspace_id,
        session_id: summary.session_id.clone(),
        last_id,
        made_ns,
        signature: key.sign(text.as_bytes()),
        statement: text,
        key_id: statement.key_id,
        public_key: public.0.to_vec(),
    }
}

/// Why a stored verdict does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerdictProblem {
    /// The statement is not a v1 statement in canonical form.
    #[error("its statement is malformed: {0}")]
    Malformed(String),
    /// The signature is not the key's, or the key id not the key's.
    #[error("its signature does not hold")]
    BadSignature,
    /// The row's columns disagree with what was signed.
    #[error("its stored columns disagree with its signed statement")]
    Columns,
    /// The stated verdict does not follow from the stated numbers.
    #[error("its verdict does not follow from its numbers")]
    Misjudged,
}

/// Checks a stored verdict on its own: the statement's form, the signature,
/// the row's columns against the statement, and that the verdict follows
/// from the numbers. Returns the statement for checks against the chain.
pub fn check(v: &SessionVerdict) -> Result<Statement, VerdictProblem> {
    let statement =
        Statement::parse(&v.statement).map_err(|e| VerdictProblem::Malformed(e.to_string()))?;
    let key = PublicKey::from_bytes(&v.public_key).map_err(|_| VerdictProblem::BadSignature)?;
    if key.key_id() != v.key_id
        || statement.key_id != v.key_id
        || !key.verifies(v.statement.as_bytes(), &v.signature)
    {
        return Err(VerdictProblem::BadSignature);
    }
    if statement.facts.workspace_id != v.workspace_id
        || statement.facts.session_id != v.session_id
        || statement.last_id != v.last_id
        || statement.made_ns != v.made_ns
    {
        return Err(VerdictProblem::Columns);
    }
    if statement.facts.judge() != statement.completeness {
        return Err(VerdictProblem::Misjudged);
    }
    Ok(statement)
}

/// Checks every stored verdict (`verdicts`, in id order) against the chain
/// `checker` holds: each on its own ([`check`]), signed by a trusted key
/// (the trusted key or one it introduced) when trust is given, made at a link whose head the chain has, and naming
/// the session's previous verdict as the one it supersedes (so a deleted
/// verdict shows). One line per problem, naming the verdict and session.
pub fn check_all(
    verdicts: &[SessionVerdict],
    checker: &warden_store::chain::check::Checker,
    trusted_keys: Option<&[PublicKey]>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut previous: HashMap<(Uuid, &str), i64> = HashMap::new();
    for v in verdicts {
        let what = format!(
            "session verdict {} (session {:?} of workspace {})",
            v.id, v.session_id, v.workspace_id
        );
        let statement = match check(v) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{what}: {e}"));
                continue;
            }
        };
        if let Some(keys) = trusted_keys
            && !keys.iter().any(|k| k.0[..] == v.public_key[..])
        {
            problems.push(format!(
                "{what}: signed by key {}, not the trusted key (foreign key)",
                v.key_id
            ));
        }
        match checker.head_of(statement.link) {
            Some(head) if head == statement.head => {}
            Some(_) => problems.push(format!(
                "{what}: the chain's link {} is not the one it was made at: the chain was rewritten",
                statement.link
            )),
            None if checker.first_seq().is_some_and(|first| statement.link < first) => {}
            None => problems.push(format!(
                "{what}: made at link {}, which the chain does not have (truncated)",
                statement.link
            )),
        }
        let key = (v.workspace_id, v.session_id.as_str());
        let expected = previous.get(&key).copied();
        if statement.supersedes != expected {
            problems.push(format!(
                "{what}: supersedes {}, but the session's previous stored verdict is {}: a verdict was removed or replaced",
                statement.supersedes.map_or("none".into(), |s| s.to_string()),
                expected.map_or("none".into(), |s| s.to_string()),
            ));
        }
        previous.insert(key, v.id);
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(final_sequence: Option<i64>, missing: u64, unexplained: u64) -> Facts {
        Facts {
            workspace_id: Uuid::nil(),
            session_id: "line\nbreak \u{1b}[31m".into(),
            final_sequence,
            records: 10,
            conflicts: 0,
            first_sequence: Some(0),
            last_sequence: Some(9),
            missing,
            client_lost: missing - unexplained,
            agent_lost: 0,
            server_lost: 0,
            unexplained,
            purged: 0,
        }
    }

    #[test]
    fn the_verdict_follows_from_the_end_and_the_losses() {
        let cases = [
            (Some(9), 0, 0, Completeness::Complete),
            (Some(-1), 0, 0, Completeness::Complete),
            (Some(12), 3, 0, Completeness::CompleteExceptReportedDrops),
            (Some(12), 3, 1, Completeness::Incomplete),
            (None, 0, 0, Completeness::Incomplete),
            (None, 2, 0, Completeness::Incomplete),
        ];
        for (end, missing, unexplained, want) in cases {
            assert_eq!(
                facts(end, missing, unexplained).judge(),
                want,
                "{end:?} {missing} {unexplained}"
            );
        }
    }

    #[test]
    fn a_statement_reads_back_and_only_its_canonical_form_does() {
        let facts = facts(Some(12), 3, 0);
        let statement = Statement {
            completeness: facts.judge(),
            facts,
            link: 7,
            last_id: 120,
            head: [0xab; 32],
            supersedes: Some(4),
            made_ns: 1_765_227_526_000_000_000,
            key_id: "0123456789abcdef".into(),
        };
        let text = statement.text();
        // The session id cannot break a line.
        assert_eq!(text.lines().count(), 21);
        assert_eq!(Statement::parse(&text).unwrap(), statement);
        for bad in [
            text.replace("missing 3\n", "missing 03\n"),
            text.replace("verdict complete", "verdict done"),
            text.replace("link 7\n", "link 7\nlink 8\n"),
            format!("{text}extra 1\n"),
            text.replace("warden session verdict v1", "warden session verdict v2"),
        ] {
            assert!(Statement::parse(&bad).is_err(), "{bad}");
        }
    }
}
