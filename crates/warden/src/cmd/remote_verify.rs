//! `warden verify --url URL --token TOKEN`: the offline checks, against a
//! running server, with an auditor (or admin) token. Checkpoints and
//! session verdicts first (so one signed meanwhile is not taken for a
//! truncated chain), then every chain link, then the records they commit a
//! page at a time (each fed to the checker and dropped), then the admin
//! event log: the same checks, verdict lines and exit codes as `--data-dir`.

use serde::Deserialize;
use warden_api::ApiClient;
use warden_evidence::bundle::{LinkJson, RecordJson};
use warden_evidence::checkpoint::CheckpointFile;
use warden_evidence::json::VerdictJson;
use warden_evidence::verify::{Report, Trust, verify_with_admin_events};
use warden_store::chain::ChainHead;
use warden_store::chain::check::Checker;

use super::failure::Failure;

/// Items per request.
const PAGE: u32 = 10_000;

#[derive(Deserialize)]
struct Links {
    links: Vec<LinkJson>,
}

#[derive(Deserialize)]
struct Records {
    records: Vec<RecordJson>,
}

#[derive(Deserialize)]
struct Verdicts {
    verdicts: Vec<VerdictJson>,
}

fn malformed(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::runtime_msg(format!("the server sent a malformed {what}: {e}"))
}

/// Verifies what the server at `client` serves.
pub async fn verify(client: &ApiClient, trust: &Trust) -> Result<Report, Failure> {
    let mut checkpoints = Vec::new();
    let mut after = 0;
    loop {
        let page: Vec<CheckpointFile> = client
            .get_json(&format!("/api/v1/checkpoints?after={after}&limit={PAGE}"))
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for c in page {
            checkpoints.push(c.to_checkpoint().map_err(|e| malformed("checkpoint", e))?);
        }
    }

    // Verdicts before the links too: each names a link, and one made while
    // the links are read must find it.
    let mut verdicts = Vec::new();
    let mut after = 0;
    loop {
        let page: Verdicts = client
            .get_json(&format!(
                "/api/v1/chain/verdicts?after={after}&limit={PAGE}"
            ))
            .await?;
        let Some(last) = page.verdicts.last() else {
            break;
        };
        after = last.id;
        for v in page.verdicts {
            verdicts.push(
                v.into_verdict()
                    .map_err(|e| malformed("session verdict", e))?,
            );
        }
    }
    let mut links = Vec::new();
    let mut after = -1;
    loop {
        let page: Links = client
            .get_json(&format!("/api/v1/chain/links?after={after}&limit={PAGE}"))
            .await?;
        let Some(last) = page.links.last() else { break };
        after = last.seq();
        for l in page.links {
            links.push(l.into_link().map_err(|e| malformed("chain link", e))?);
        }
    }
    let mut checker = Checker::new(links, ChainHead::EMPTY, false);
    // Records committed after the links were read belong to later links.
    let before = checker.end().last_id + 1;
    let mut after = 0;
    loop {
        let page: Records = client
            .get_json(&format!(
                "/api/v1/chain/records?after={after}&before={before}&limit={PAGE}"
            ))
            .await?;
        let Some(last) = page.records.last() else {
            break;
        };
        after = last.id();
        for r in page.records {
            checker.record(r.into_record().map_err(|e| malformed("record", e))?);
        }
    }

    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = client.admin_events(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            events.push(
                warden_server::admin_events::from_info(e)
                    .ok_or_else(|| malformed("admin event", e.seq))?,
            );
        }
    }
    Ok(verify_with_admin_events(
        checker,
        &checkpoints,
        &events,
        &verdicts,
        trust,
    ))
}
