//! The API's bodies ([`warden_api`]) made from what the store returns. The
//! API crate knows nothing of the store, so the conversions live here.

use warden_api::records::{GapRange, SessionInfo};
use warden_api::workspaces::{LossInfo, WorkspaceInfo};
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
