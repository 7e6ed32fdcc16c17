//! `/overview`: the last hour at a glance (records and denials per minute,
//! the most denied hosts, the workspaces with the most denials) and loss
//! per workspace (client-reported drops, sequence gaps, unexplained loss)
//! with the sessions that have any.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use maud::{Markup, html};
use warden_store::{
    ActivityQuery, LossSource, MINUTE_NANOS, MinuteActivity, StoreError, Workspace,
};

use super::layout::{Nav, html_response, page, store_failure};
use super::require_session;
use super::text::{path_segment, shown};
use crate::http::AppState;
use crate::plausible::saturating_total;

/// Minutes the chart covers.
const MINUTES: i64 = 60;
/// Rows of the top lists.
const TOP: usize = 10;
/// Sessions with loss listed per workspace.
const LOSSY_SESSIONS: usize = 10;

/// One workspace's part of the overview.
struct WorkspaceRow {
    workspace: Workspace,
    allowed: u64,
    denied: u64,
    /// Records reported lost, by who saw the loss.
    client_drops: u64,
    agent_drops: u64,
    refused: u64,
    /// Sequence numbers missing in its sessions, and those no report covers.
    missing: u64,
    unexplained: u64,
    /// Sessions with any loss: (id, missing, reported, unexplained).
    lossy: Vec<(String, u64, u64, u64)>,
    lossy_total: usize,
}

pub(super) async fn overview(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let chrome = match require_session(&state, &headers, &uri).await {
        Ok(chrome) => chrome,
        Err(redirect) => return redirect.into_response(),
    };
    let now = Timestamp::now();
    // Whole minutes: the chart's last bar is the current minute.
    let end_minute = now.as_nanosecond().div_euclid(i128::from(MINUTE_NANOS)) + 1;
    let end = Timestamp::from_nanosecond(end_minute * i128::from(MINUTE_NANOS)).unwrap_or(now);
    let start = end - SignedDuration::from_mins(MINUTES);
    let hosts_since = floor_to_hour(start);
    match gather(&state, start, end).await {
        Ok((minutes, hosts, rows)) => {
            let main = html! {
                h1 { "Overview" }
                (chart(&minutes, start))
                div.columns {
                    section aria-labelledby="hosts-h" {
                        h2 #hosts-h {
                            "Most denied hosts since " (hosts_since.strftime("%H:%M UTC"))
                        }
                        (top_hosts(&hosts))
                    }
                    section aria-labelledby="ws-h" {
                        h2 #ws-h { "Workspaces by denials, last hour" }
                        (top_workspaces(&rows))
                    }
                }
                section aria-labelledby="loss-h" {
                    h2 #loss-h { "Loss per workspace" }
                    (losses(&rows))
                }
            };
            html_response(
                StatusCode::OK,
                page("Overview", Nav::Overview, &chrome, main),
            )
        }
        Err(e) => store_failure(&chrome, &e),
    }
}

const HOUR_NANOS: i128 = 3_600_000_000_000;

/// The start of the UTC hour `t` is in.
fn floor_to_hour(t: Timestamp) -> Timestamp {
    Timestamp::from_nanosecond(t.as_nanosecond().div_euclid(HOUR_NANOS) * HOUR_NANOS).unwrap_or(t)
}

/// The start of the first UTC hour that starts at or after `t`.
fn ceil_to_hour(t: Timestamp) -> Timestamp {
    let hours = (t.as_nanosecond() + HOUR_NANOS - 1).div_euclid(HOUR_NANOS);
    Timestamp::from_nanosecond(hours * HOUR_NANOS).unwrap_or(t)
}

async fn gather(
    state: &AppState,
    start: Timestamp,
    end: Timestamp,
) -> Result<(Vec<MinuteActivity>, Vec<(String, u64)>, Vec<WorkspaceRow>), StoreError> {
    let minutes = state.store.minute_activity(None, start, end).await?;
    let mut hosts: BTreeMap<String, u64> = BTreeMap::new();
    let mut rows = Vec::new();
    for workspace in state.store.list_workspaces().await? {
        // Counts over the exact hour (whole minutes: read from the minute
        // counters); hosts over whole hours, which the store keeps counted
        // per hour (a range that cuts an hour would decode that hour's
        // blocks: half a second at 10 million records).
        let activity = state
            .store
            .workspace_activity(ActivityQuery {
                workspace_id: workspace.id,
                since: Some(start),
                until: Some(end),
                top_hosts: 0,
            })
            .await?;
        let denied_hosts = state
            .store
            .workspace_activity(ActivityQuery {
                workspace_id: workspace.id,
                since: Some(floor_to_hour(start)),
                until: Some(ceil_to_hour(end)),
                top_hosts: TOP as u32,
            })
            .await?;
        for h in denied_hosts.top_denied_hosts {
            *hosts.entry(h.host).or_default() += h.records;
        }
        let losses = state.store.workspace_losses(workspace.id).await?;
        let by = |source: LossSource| -> u64 {
            let counts = losses
                .iter()
                .filter(|l| l.source == source)
                .map(|l| l.records);
            saturating_total(counts)
        };
        let sessions = state.store.sessions(workspace.id).await?;
        let mut lossy: Vec<(String, u64, u64, u64)> = sessions
            .iter()
            .map(|s| &s.summary)
            .filter(|s| s.missing() > 0 || s.reported_losses() > 0)
            .map(|s| {
                (
                    s.session_id.clone(),
                    s.missing(),
                    s.reported_losses(),
                    s.unexplained(),
                )
            })
            .collect();
        let lossy_total = lossy.len();
        // Unexplained loss first: that is what needs a look.
        lossy.sort_by(|a, b| b.3.cmp(&a.3).then(b.1.cmp(&a.1)));
        lossy.truncate(LOSSY_SESSIONS);
        rows.push(WorkspaceRow {
            allowed: activity.allowed,
            denied: activity.denied,
            client_drops: by(LossSource::Client),
            agent_drops: by(LossSource::Agent),
            refused: by(LossSource::Server),
            missing: saturating_total(sessions.iter().map(|s| s.summary.missing())),
            unexplained: saturating_total(sessions.iter().map(|s| s.summary.unexplained())),
            lossy,
            lossy_total,
            workspace,
        });
    }
    let mut hosts: Vec<(String, u64)> = hosts.into_iter().collect();
    hosts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    hosts.truncate(TOP);
    Ok((minutes, hosts, rows))
}

/// Records (allowed and denied stacked) per minute as bars.
fn chart(minutes: &[MinuteActivity], start: Timestamp) -> Markup {
    const W: i64 = 600;
    const H: i64 = 150;
    const BAR: i64 = W / MINUTES;
    let first = start.as_nanosecond().div_euclid(i128::from(MINUTE_NANOS));
    let mut bars = vec![(0u64, 0u64); MINUTES as usize];
    for m in minutes {
        let i = m
            .minute
            .as_nanosecond()
            .div_euclid(i128::from(MINUTE_NANOS))
            - first;
        if let Some(bar) = usize::try_from(i).ok().and_then(|i| bars.get_mut(i)) {
            *bar = (m.allowed, m.denied);
        }
    }
    let total: u64 = bars.iter().map(|(a, d)| a + d).sum();
    let denied: u64 = bars.iter().map(|(_, d)| d).sum();
    let peak = bars.iter().map(|(a, d)| a + d).max().unwrap_or(0).max(1);
    let height = |n: u64| -> i64 { i64::try_from(n.saturating_mul(H as u64) / peak).unwrap_or(H) };
    html! {
        section.chart aria-labelledby="chart-h" {
            h2 #chart-h { "Records per minute, last hour" }
            p.legend {
                span.key.allowed {} "allowed " span.key.denied {} "denied"
                " · " strong #total-records { (total) } " records, "
                strong #total-denied { (denied) } " denied"
            }
            svg viewBox=(format!("0 0 {W} {H}")) preserveAspectRatio="none" role="img"
                aria-label=(format!("{total} records, {denied} denied in the last hour; the busiest minute had {peak}")) {
                line.axis x1="0" y1=(H) x2=(W) y2=(H) {}
                @for (i, (allowed, denied)) in bars.iter().enumerate() {
                    @let x = i as i64 * BAR;
                    @let hd = height(*denied);
                    @let ha = height(*allowed + *denied) - hd;
                    @if ha > 0 {
                        rect.allowed x=(x) y=(H - hd - ha) width=(BAR - 1) height=(ha) {
                            title { (allowed) " allowed" }
                        }
                    }
                    @if hd > 0 {
                        rect.denied x=(x) y=(H - hd) width=(BAR - 1) height=(hd) {
                            title { (denied) " denied" }
                        }
                    }
                }
            }
            div.axis-labels aria-hidden="true" {
                span { "60 min ago" } span { "peak " (peak) " per minute" } span { "now" }
            }
        }
    }
}

fn top_hosts(hosts: &[(String, u64)]) -> Markup {
    html! {
        @if hosts.is_empty() {
            p.empty { "No denials in the last hour." }
        } @else {
            table #top-hosts {
                thead { tr { th scope="col" { "Host" } th.num scope="col" { "Denied" } } }
                tbody {
                    @for (host, n) in hosts {
                        tr {
                            td.wrap {
                                a href=(format!("/?decision=deny&since=1h&url_contains={}", path_segment(host))) { (shown(host)) }
                            }
                            td.num { (n) }
                        }
                    }
                }
            }
        }
    }
}

fn top_workspaces(rows: &[WorkspaceRow]) -> Markup {
    let mut ranked: Vec<&WorkspaceRow> = rows.iter().filter(|r| r.denied > 0).collect();
    ranked.sort_by(|a, b| {
        b.denied
            .cmp(&a.denied)
            .then_with(|| a.workspace.name.cmp(&b.workspace.name))
    });
    ranked.truncate(TOP);
    html! {
        @if ranked.is_empty() {
            p.empty { "No denials in the last hour." }
        } @else {
            table #top-workspaces {
                thead { tr { th scope="col" { "Workspace" } th.num scope="col" { "Denied" } th.num scope="col" { "Allowed" } } }
                tbody {
                    @for r in ranked {
                        tr {
                            td.wrap { a href=(format!("/workspaces/{}", r.workspace.id)) { (shown(&r.workspace.name)) } }
                            td.num { a href=(format!("/?decision=deny&since=1h&workspace={}", path_segment(&r.workspace.name))) { (r.denied) } }
                            td.num { (r.allowed) }
                        }
                    }
                }
            }
        }
    }
}

fn losses(rows: &[WorkspaceRow]) -> Markup {
    html! {
        @if rows.is_empty() {
            p.empty { "No workspaces registered yet." }
        } @else {
            div.scroll {
                table #losses {
                    thead {
                        tr {
                            th scope="col" { "Workspace" }
                            th.num scope="col" title="records the sandbox client reported dropping" { "Client drops" }
                            th.num scope="col" title="records the workspace agent dropped" { "Agent drops" }
                            th.num scope="col" title="records the control plane refused" { "Refused" }
                            th.num scope="col" title="sequence numbers no stored record carries" { "Gaps" }
                            th.num scope="col" title="missing numbers no report explains" { "Unexplained" }
                            th scope="col" { "Sessions with loss" }
                        }
                    }
                    tbody {
                        @for r in rows {
                            tr.lossy[r.unexplained > 0] {
                                td.wrap { a href=(format!("/workspaces/{}", r.workspace.id)) { (shown(&r.workspace.name)) } }
                                td.num { (r.client_drops) }
                                td.num { (r.agent_drops) }
                                td.num { (r.refused) }
                                td.num { (r.missing) }
                                td.num.bad[r.unexplained > 0] { (r.unexplained) }
                                td.wrap {
                                    @if r.lossy.is_empty() { "none" }
                                    ul.inline {
                                        @for (id, missing, reported, unexplained) in &r.lossy {
                                            li {
                                                a href=(format!("/workspaces/{}/sessions/{}", r.workspace.id, path_segment(id))) { (shown(id)) }
                                                " (" (missing) " missing, " (reported) " reported, " (unexplained) " unexplained)"
                                            }
                                        }
                                    }
                                    @if r.lossy_total > r.lossy.len() {
                                        " and " (r.lossy_total - r.lossy.len()) " more on "
                                        a href=(format!("/workspaces/{}", r.workspace.id)) { "the workspace page" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_round_to_whole_utc_hours() {
        let t: Timestamp = "2026-12-07T07:42:10Z".parse().unwrap();
        let hour: Timestamp = "2026-12-07T07:00:00Z".parse().unwrap();
        let next: Timestamp = "2026-12-07T08:00:00Z".parse().unwrap();
        assert_eq!(floor_to_hour(t), hour);
        assert_eq!(ceil_to_hour(t), next);
        assert_eq!(floor_to_hour(hour), hour);
        assert_eq!(ceil_to_hour(hour), hour);
    }
}
