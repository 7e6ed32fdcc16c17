//! `/`: the live feed. The newest matching records rendered here, then
//! `web/app.js` follows the record stream from the page's head (the
//! `data-stream` URL, cookie-authenticated) and adds new ones on top. The
//! filters are `warden logs`'s, in the page's query string, so a filtered
//! view is a link to share.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use warden_api::records::RecordParams;
use warden_store::{Order, StoredRecord};

use super::layout::{Nav, error_page, html_response, page, store_failure};
use super::require_session;
use super::text::{path_segment, shown};
use crate::http::AppState;
use crate::http::cursor::RecordCursor;
use crate::http::records::record_query;
use crate::line::LineRecord;
use crate::line::format::rfc3339_nano;

/// Records the page opens with (the stream adds the rest).
const FIRST_ROWS: u32 = 100;
/// The most records the page keeps; older rows leave as new ones come
/// (`web/app.js` reads it from `data-window`).
pub(super) const WINDOW: usize = 500;

/// The feed's filters as the form sends them: empty fields mean "any".
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Filters {
    workspace: Option<String>,
    owner: Option<String>,
    decision: Option<String>,
    session: Option<String>,
    since: Option<String>,
    until: Option<String>,
    url_contains: Option<String>,
}

impl Filters {
    fn parse(raw: Option<&str>) -> Filters {
        let mut f: Filters = serde_urlencoded::from_str(raw.unwrap_or("")).unwrap_or_default();
        for field in [
            &mut f.workspace,
            &mut f.owner,
            &mut f.decision,
            &mut f.session,
            &mut f.since,
            &mut f.until,
            &mut f.url_contains,
        ] {
            if field.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *field = None;
            }
        }
        f
    }

    /// The non-empty filters as query pairs, in the API's names.
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("workspace", &self.workspace),
            ("owner", &self.owner),
            ("decision", &self.decision),
            ("session", &self.session),
            ("since", &self.since),
            ("until", &self.until),
            ("url_contains", &self.url_contains),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }

    fn params(&self) -> RecordParams {
        RecordParams {
            workspace: self.workspace.clone(),
            owner: self.owner.clone(),
            decision: self.decision.clone(),
            session: self.session.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            url_contains: self.url_contains.clone(),
            ..RecordParams::default()
        }
    }
}

pub(super) async fn feed(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    let chrome = match require_session(&state, &headers, &uri).await {
        Ok(chrome) => chrome,
        Err(redirect) => return redirect.into_response(),
    };
    let filters = Filters::parse(raw.as_deref());
    let mut query = match record_query(&state, &filters.params()).await {
        Ok(q) => q,
        Err(e) if e.status().is_client_error() => {
            let main = html! {
                h1 { "Live feed" }
                (filter_form(&filters))
                p.error role="alert" { (e.message()) }
            };
            return html_response(
                StatusCode::BAD_REQUEST,
                page("Live feed", Nav::Feed, &chrome, main),
            );
        }
        Err(e) => return error_page(e.status(), Some(&chrome), e.message()),
    };
    query.order = Order::NewestFirst;
    query.limit = FIRST_ROWS;
    // Read before the page: following from here misses nothing (as the
    // API's record list does).
    let last_before = match state.store.last_record_id().await {
        Ok(id) => id.unwrap_or(0),
        Err(e) => return store_failure(&chrome, &e),
    };
    let records = match state.store.records(query).await {
        Ok(r) => r,
        Err(e) => return store_failure(&chrome, &e),
    };
    let head = records
        .first()
        .map_or(last_before, |r| r.id.max(last_before));
    let mut stream_query = filters.pairs();
    let after = RecordCursor(head).to_string();
    stream_query.push(("after", &after));
    let stream = format!(
        "/api/v1/records/stream?{}",
        serde_urlencoded::to_string(&stream_query).unwrap_or_default()
    );
    let main = html! {
        h1 { "Live feed" }
        (filter_form(&filters))
        div.feedbar {
            button #pause type="button" aria-pressed="false" { "Pause" }
            span #live-status role="status" aria-live="polite" { "connecting…" }
        }
        @if records.is_empty() {
            p #feed-empty.empty { "No records match yet; new ones appear here as they are stored." }
        }
        ol #feed.records data-stream=(stream) data-window=(WINDOW) aria-label="Records, newest first" {
            @for r in &records { (record_row(r)) }
        }
    };
    html_response(StatusCode::OK, page("Live feed", Nav::Feed, &chrome, main))
}

fn filter_form(f: &Filters) -> Markup {
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let decision = f.decision.as_deref().unwrap_or("");
    html! {
        form.filters method="get" action="/" aria-label="Filters" {
            label { "Workspace" input type="text" name="workspace" value=(value(&f.workspace)); }
            label { "Owner" input type="text" name="owner" value=(value(&f.owner)); }
            label { "Decision"
                select name="decision" {
                    option value="" selected[decision.is_empty()] { "any" }
                    option value="deny" selected[decision == "deny"] { "denied" }
                    option value="allow" selected[decision == "allow"] { "allowed" }
                }
            }
            label { "Session" input type="text" name="session" value=(value(&f.session)); }
            label { "Since" input type="text" name="since" placeholder="15m, 2h or RFC 3339" value=(value(&f.since)); }
            label { "Until" input type="text" name="until" placeholder="RFC 3339 or 1h" value=(value(&f.until)); }
            label.wide { "URL contains" input type="text" name="url_contains" value=(value(&f.url_contains)); }
            div.actions {
                button type="submit" { "Apply" }
                a href="/" { "Clear" }
            }
        }
    }
}

/// One record as a row; `web/app.js` (`recordRow`) builds the same from a
/// stream event.
pub(super) fn record_row(r: &StoredRecord) -> Markup {
    let line = LineRecord::stored(r);
    let deny = r.decision == warden_proto::domain::Decision::Deny;
    let ws = format!("/workspaces/{}", r.workspace_id);
    html! {
        li.rec.deny[deny].allow[!deny] data-id=(r.id) {
            div.line1 {
                time { (rfc3339_nano(line.stamp())) }
                span.dec { @if deny { "deny" } @else { "allow" } }
                span.method { (shown(&r.method)) }
                a.ws href=(ws) {
                    @if r.workspace_name.is_empty() { (r.workspace_id) } @else { (shown(&r.workspace_name)) }
                }
                @if let Some(session) = &r.session_id {
                    a.sess href=(format!("{ws}/sessions/{}", path_segment(session))) {
                        (shown(session)) " #" (r.sequence_number)
                    }
                }
                @if r.conflict { span.flag { "conflict" } }
            }
            div.url { (shown(&r.url)) }
            div.more {
                @if !r.matched_rule.is_empty() {
                    span { "rule " span.v { (shown(&r.matched_rule)) } }
                }
                @if !r.process.is_empty() {
                    span { "process " span.v { (shown(&r.process)) } }
                }
                span { "peer " span.v { (shown(&r.peer.comm)) } " pid " (r.peer.pid) " uid " (r.peer.uid) " " span.v { (shown(&r.peer.exe)) } }
            }
        }
    }
}
