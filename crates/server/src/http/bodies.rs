//! The API's bodies ([`warden_api`]) made from what the store returns. The
//! API crate knows nothing of the store, so the conversions live here.

use warden_api::records::{GapRange, SessionInfo, VerdictInfo};
use warden_api::workspaces::{LossInfo, WorkspaceInfo};
use warden_store::verdict::SessionVerdict;
use warden_store::{Loss, SessionSummary, Workspace};

/// A workspace as listed, with every loss recorded for it.
pub(crate) fn workspace_info(w: &Workspace, losses: &[Loss]) -> WorkspaceInfo {
    WorkspaceInfo {
        workspace_id: w.id,
        workspace_name: w.name.clone(),
        owner: w.owner.clone(),
        agent_id: w.agent.id,
        agent_name: w.agent.name.clone(),
        startup_script: w.startup_script.clone(),
        created_at: w.created_at,
        token_issued_at: w.agent.token_issued_at,
        last_contact_at: w.agent.last_contact_at,
        last_batch_at: w.agent.last_batch_at,
        last_batch_id: w.agent.last_batch_id,
        losses: loss_infos(losses),
    }
}

/// Losses by source and reason.
pub(crate) fn loss_infos(losses: &[Loss]) -> Vec<LossInfo> {
    losses
        .iter()
        .map(|l| LossInfo {
            source: l.source.as_str().to_owned(),
            reason: l.reason.clone(),
            records: l.records,
            frames: l.frames,
        })
        .collect()
}

/// What is known about one session.
pub(crate) fn session_info(s: &SessionSummary) -> SessionInfo {
    SessionInfo {
        session_id: s.session_id.clone(),
        records: s.records,
        conflicts: s.conflicts,
        first_sequence: s.first_sequence_number,
        last_sequence: s.last_sequence_number,
        final_sequence: s.final_sequence_number,
        missing: s.missing(),
        reported_lost: s.reported_losses(),
        unexplained: s.unexplained(),
        losses: loss_infos(&s.losses),
        agent_dropped: s
            .agent_dropped
            .iter()
            .map(|r| GapRange {
                first: r.first,
                last: r.last,
            })
            .collect(),
        purged: s.purged,
        policy_digest: s.policy_digest.clone(),
    }
}

/// A stored session verdict, as the API shows it.
pub(crate) fn verdict_info(v: &SessionVerdict) -> VerdictInfo {
    let statement = warden_evidence::verdict::Statement::parse(&v.statement).ok();
    VerdictInfo {
        id: v.id,
        verdict: statement
            .as_ref()
            .map_or("unreadable", |s| s.completeness.as_str())
            .to_owned(),
        end_reported: statement
            .as_ref()
            .is_some_and(|s| s.facts.final_sequence.is_some()),
        signed_at: jiff::Timestamp::from_nanosecond(i128::from(v.made_ns))
            .map(|t| t.to_string())
            .unwrap_or_default(),
        supersedes: statement.and_then(|s| s.supersedes),
        key_id: v.key_id.clone(),
        statement: v.statement.clone(),
        signature: hex::encode(&v.signature),
    }
}
