//! Roles and who may use what: the one table of access rules every HTTP
//! route and gRPC method is checked against, and the middleware that
//! enforces it.
//!
//! Roles: **admin** (everything: the bootstrap admin token and named admin
//! tokens), **auditor** (read-only: records, sessions, policies,
//! checkpoints, admin events, the web page), **agent** (a workspace's agent
//! token: the agent API only, which writes its own workspace's records and
//! reads nothing else). A missing or unknown token is `401`; a valid token
//! whose role may not use the route is `403` (gRPC: `UNAUTHENTICATED` and
//! `PERMISSION_DENIED`).
//!
//! [`HTTP_ROUTES`] is authoritative: [`authorize`] looks every request's
//! route up in it, and a route the table does not name is refused (`500`,
//! logged) rather than served unchecked. The table test
//! (`tests/access.rs`) enumerates the router's routes and the agent API's
//! methods and calls each with every kind of credential, so a route added
//! without a rule fails it.
//!
//! No route deletes or edits records: only retention purges them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use uuid::Uuid;
use warden_proto::api::bearer_token;
use warden_store::{Store, StoreError, TokenHash, TokenRole};

use crate::auth::{agent_of_token, api_token_id, token_matches};
use crate::connections::note_authenticated;
use crate::grpc::PeerAddr;
use crate::http::{AppState, HttpError};

/// What a credential may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Read-only.
    Auditor,
    /// A workspace's agent: the agent API only.
    Agent,
}

impl Role {
    /// `admin`, `auditor` or `agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Agent => "agent",
        }
    }
}

impl From<TokenRole> for Role {
    fn from(r: TokenRole) -> Role {
        match r {
            TokenRole::Admin => Role::Admin,
            TokenRole::Auditor => Role::Auditor,
        }
    }
}

/// Who a request authenticated as. Handlers of admin actions read it from
/// the request's extensions to record who did what (never the secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// What it may do.
    pub role: Role,
    /// The named token's id, the agent's id; `None` for the bootstrap admin
    /// token.
    pub id: Option<Uuid>,
    /// The named token's name, `admin` for the bootstrap admin token, the
    /// workspace's name for an agent.
    pub name: String,
}

impl Principal {
    /// The bootstrap admin token (`WARDEN_ADMIN_TOKEN` / `admin-token`).
    pub fn bootstrap() -> Principal {
        Principal {
            role: Role::Admin,
            id: None,
            name: "admin".into(),
        }
    }
}

/// Who may use a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Anyone: holds no data (health, metrics, the OpenAPI document, the
    /// sign-in form, the page's script and style sheet).
    Public,
    /// A web page: admin or auditor signed in with the session cookie;
    /// anyone else is sent to the sign-in form (`303`).
    Page,
    /// A read: admin or auditor, by bearer token, or by the web session
    /// cookie (how the page's live stream authenticates).
    Read,
    /// A change: admin, by bearer token only, so a cookie (which a browser
    /// attaches on its own) never makes one: no CSRF surface on the API.
    Admin,
    /// The agent API: a live agent token only.
    Agent,
}

/// One route's rule.
#[derive(Clone, Debug)]
pub struct RouteRule {
    /// The method (`HEAD` follows `GET`).
    pub method: Method,
    /// The route's path as the router spells it.
    pub path: &'static str,
    /// Who may use it.
    pub rule: Rule,
}

const fn route(method: Method, path: &'static str, rule: Rule) -> RouteRule {
    RouteRule { method, path, rule }
}

/// Every HTTP route and who may use it.
pub const HTTP_ROUTES: &[RouteRule] = &[
    // Operations.
    route(Method::GET, "/healthz", Rule::Public),
    route(Method::GET, "/metrics", Rule::Public),
    route(Method::GET, "/api/v1/openapi.json", Rule::Public),
    // The admin API.
    route(Method::GET, "/api/v1/workspaces", Rule::Read),
    route(Method::POST, "/api/v1/workspaces", Rule::Admin),
    route(Method::DELETE, "/api/v1/workspaces/{name}", Rule::Admin),
    route(
        Method::POST,
        "/api/v1/workspaces/{name}/rotate-token",
        Rule::Admin,
    ),
    route(Method::GET, "/api/v1/tokens", Rule::Admin),
    route(Method::POST, "/api/v1/tokens", Rule::Admin),
    route(Method::DELETE, "/api/v1/tokens/{name}", Rule::Admin),
    route(Method::GET, "/api/v1/admin-events", Rule::Read),
    // Records and evidence: reads only.
    route(Method::GET, "/api/v1/records", Rule::Read),
    route(Method::GET, "/api/v1/records/stream", Rule::Read),
    route(
        Method::GET,
        "/api/v1/workspaces/{name}/sessions",
        Rule::Read,
    ),
    route(
        Method::GET,
        "/api/v1/workspaces/{name}/sessions/{session}",
        Rule::Read,
    ),
    route(Method::GET, "/api/v1/summaries", Rule::Read),
    // Coder's session-log read API (docs/exports.md): reads, like the
    // session report.
    route(
        Method::GET,
        "/api/v2/agent-firewall/sessions/{id}/logs",
        Rule::Read,
    ),
    route(Method::GET, "/api/v1/policies/{digest}", Rule::Read),
    route(Method::GET, "/api/v1/checkpoints", Rule::Read),
    route(Method::GET, "/api/v1/checkpoints/latest", Rule::Read),
    route(Method::GET, "/api/v1/chain/links", Rule::Read),
    route(Method::GET, "/api/v1/chain/records", Rule::Read),
    route(Method::GET, "/api/v1/chain/verdicts", Rule::Read),
    // The web page.
    route(Method::GET, "/", Rule::Page),
    route(Method::GET, "/overview", Rule::Page),
    route(Method::GET, "/workspaces/{name}", Rule::Page),
    route(
        Method::GET,
        "/workspaces/{name}/sessions/{session}",
        Rule::Page,
    ),
    route(Method::GET, "/login", Rule::Public),
    route(Method::POST, "/login", Rule::Public),
    route(Method::POST, "/logout", Rule::Public),
    route(Method::GET, "/assets/app.js", Rule::Public),
    route(Method::GET, "/assets/app.css", Rule::Public),
];

/// Every agent API method (gRPC path) and who may use it.
pub const GRPC_METHODS: &[(&str, Rule)] = &[
    ("/warden.agentapi.v2.AgentApi/GetManifest", Rule::Agent),
    (
        "/warden.agentapi.v2.AgentApi/ReportBoundaryLogs",
        Rule::Agent,
    ),
];

/// The rule for `method` on the route `path`; `None` when the table has
/// none.
pub fn rule_for(method: &Method, path: &str) -> Option<Rule> {
    let method = if *method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    HTTP_ROUTES
        .iter()
        .find(|r| r.path == path && r.method == *method)
        .map(|r| r.rule)
}

/// Whether `role` may use a route with `rule`.
pub fn allows(rule: Rule, role: Role) -> bool {
    match rule {
        Rule::Public => true,
        Rule::Page | Rule::Read => matches!(role, Role::Admin | Role::Auditor),
        Rule::Admin => role == Role::Admin,
        Rule::Agent => role == Role::Agent,
    }
}

/// Who `token` belongs to; `None` for a token that is not valid here.
/// Compares hashes in constant time.
pub async fn identify(
    store: &dyn Store,
    bootstrap_admin: &TokenHash,
    token: &str,
) -> Result<Option<Principal>, StoreError> {
    if let Some(id) = api_token_id(token) {
        return Ok(match store.api_token_credentials(id).await? {
            Some((t, hash)) if token_matches(token, &hash) => Some(Principal {
                role: t.role.into(),
                id: Some(t.id),
                name: t.name,
            }),
            _ => None,
        });
    }
    if let Some(agent) = agent_of_token(token) {
        return Ok(match store.agent_credentials(agent).await? {
            Some(c) if token_matches(token, &c.token_hash) => Some(Principal {
                role: Role::Agent,
                id: Some(agent),
                name: c.manifest.workspace_name,
            }),
            _ => None,
        });
    }
    Ok(token_matches(token, bootstrap_admin).then(Principal::bootstrap))
}

/// The bearer token of a request, if it carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
}

/// How often a named token's "last used" time is written (not on every
/// call: a busy auditor script would turn reads into writes).
const NOTE_USE_EVERY: Duration = Duration::from_secs(60);

/// When each named token's use was last written, per server.
#[derive(Debug, Default)]
pub struct UseNotes(Mutex<HashMap<Uuid, Instant>>);

impl UseNotes {
    /// Whether a use of `id` now should be written.
    fn due(&self, id: Uuid) -> bool {
        let Ok(mut noted) = self.0.lock() else {
            return false;
        };
        let now = Instant::now();
        match noted.get(&id) {
            Some(at) if now.duration_since(*at) < NOTE_USE_EVERY => false,
            _ => {
                noted.insert(id, now);
                true
            }
        }
    }
}

/// Checks every HTTP request against [`HTTP_ROUTES`]; a request let
/// through carries its [`Principal`] (when it authenticated) in its
/// extensions. Refusals are logged once, without the token or the cookie.
pub async fn authorize(
    State(state): State<Arc<AppState>>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    // Unrouted paths reach the fallback (404) with no matched path.
    let Some(path) = matched.as_ref().map(MatchedPath::as_str) else {
        return next.run(request).await;
    };
    let rule = match rule_for(request.method(), path) {
        Some(rule) => rule,
        // A method the route does not take: the router answers 405.
        None if HTTP_ROUTES.iter().any(|r| r.path == path) => return next.run(request).await,
        None => {
            tracing::error!(path, "refused a call to a route without an access rule");
            return HttpError::internal("this route has no access rule").into_response();
        }
    };
    if matches!(rule, Rule::Public | Rule::Page) {
        // Pages check the session themselves (and redirect to sign in).
        return next.run(request).await;
    }
    let verdict = match bearer(request.headers()) {
        Some(token) => match identify(&*state.store, &state.admin_token, token).await {
            Ok(Some(principal)) => Some(principal),
            Ok(None) => None,
            Err(e) => return HttpError::from(e).into_response(),
        },
        None => match crate::web::signed_in(&state, request.headers()).await {
            // A cookie authenticates reads only.
            Some(session) if rule == Rule::Read => Some(session.principal),
            Some(_) => return refuse(&request, Refusal::CookieOnChange),
            None => None,
        },
    };
    match verdict {
        Some(principal) if allows(rule, principal.role) => {
            note_authenticated(request.extensions());
            if let Some(id) = principal.id.filter(|_| principal.role != Role::Agent)
                && state.token_use.due(id)
                && let Err(e) = state.store.note_api_token_use(id, Timestamp::now()).await
            {
                tracing::warn!(error = %e.chain(), "noting a token's use failed");
            }
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Some(principal) => refuse(&request, Refusal::Role(principal.role)),
        None => refuse(&request, Refusal::NoCredential),
    }
}

/// Why a request was refused.
enum Refusal {
    /// No credential, or one that is not valid here: `401`.
    NoCredential,
    /// A valid credential whose role may not use the route: `403`.
    Role(Role),
    /// A valid session cookie on a change: `403` (changes take a bearer
    /// token).
    CookieOnChange,
}

fn refuse(request: &Request, why: Refusal) -> Response {
    let peer = request.extensions().get::<PeerAddr>().map(|p| p.0);
    let method = request.method();
    let path = request.uri().path();
    match why {
        Refusal::NoCredential => {
            tracing::warn!(%method, path, peer = ?peer, presented = bearer(request.headers()).is_some(), "refused a call without a valid token");
            HttpError::unauthorized().into_response()
        }
        Refusal::Role(role) => {
            tracing::warn!(%method, path, peer = ?peer, role = role.as_str(), "refused a call the token's role may not make");
            HttpError::forbidden(format!("an {} token may not use this route", role.as_str()))
                .into_response()
        }
        Refusal::CookieOnChange => {
            tracing::warn!(%method, path, peer = ?peer, "refused a change authenticated by a session cookie");
            HttpError::forbidden("changes take a bearer token, not the web session cookie")
                .into_response()
        }
    }
}
