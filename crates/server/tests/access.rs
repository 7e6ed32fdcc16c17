//! The route × role table: every HTTP route (API, web page, stream,
//! operations) and every agent API method, called with every kind of
//! credential, answers as its rule in `warden_server::access` says: allowed,
//! `401` without a valid credential, `403` for a valid one whose role may
//! not use it (gRPC: `UNAUTHENTICATED`, `PERMISSION_DENIED`).
//!
//! The routes come from the router itself (the paths it knows, and which
//! methods each answers), and must be exactly the rule table's; the gRPC
//! methods come from the service definition (`agent.proto`). A route or
//! method added without a rule fails here.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, StatusCode};
use support::web::sign_in_with;
use support::*;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use warden_api::ApiClient;
use warden_api::access::CreateToken;
use warden_evidence::key::SigningKey;
use warden_server::access::{GRPC_METHODS, HTTP_ROUTES, Rule};
use warden_server::auth::hash_token;
use warden_server::http::AppState;
use warden_server::metrics::Metrics;
use warden_store::{SqliteStore, Store};

const AGENT_PROTO: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../proto/proto/warden/agentapi/v2/agent.proto"
));

/// The paths a router knows, read from its `Debug` output (as the OpenAPI
/// test does; axum offers no other way to list routes). If axum changes
/// that output this finds no path and the test fails loudly.
fn router_paths(app: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{app:?}");
    let routes = debug.split("fallback_router").next().unwrap_or_default();
    routes
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|q| q.starts_with('/') && !q.contains("__private__"))
        .map(str::to_owned)
        .collect()
}

/// The HTTP routes of the server as built (API and web page), with the
/// methods each answers (not 405).
async fn routed() -> BTreeSet<(String, Method)> {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("w.db")).await.unwrap());
    let shutdown = CancellationToken::new();
    let state = Arc::new(AppState {
        store: Arc::clone(&store),
        metrics: Arc::new(Metrics::new()),
        admin_token: hash_token(ADMIN_TOKEN),
        signing_key: Arc::new(SigningKey::generate().unwrap().0),
        token_use: Default::default(),
        sessions: warden_server::web::session::Sessions::new([0; 32], false),
        shutdown: shutdown.clone(),
        max_response_bytes: warden_server::DEFAULT_MAX_RESPONSE_BYTES,
    });
    let app = warden_server::http::router(Arc::clone(&state))
        .merge(warden_server::web::router(state))
        .method_not_allowed_fallback(warden_server::http::method_not_allowed);
    let paths = router_paths(&app);
    assert!(paths.contains("/api/v1/records"), "{paths:?}");
    assert!(paths.contains("/login"), "{paths:?}");
    let mut routed = BTreeSet::new();
    for path in paths {
        let concrete = concrete(&path, Rule::Admin);
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            let request = http::Request::builder()
                .method(method.clone())
                .uri(&concrete)
                .body(axum::body::Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            if response.status() != StatusCode::METHOD_NOT_ALLOWED {
                routed.insert((path.clone(), method));
            }
        }
    }
    shutdown.cancel();
    store.close().await.unwrap();
    routed
}

/// A request path for `path`: names that exist for reads, names that do
/// not for changes (so the table test changes nothing).
fn concrete(path: &str, rule: Rule) -> String {
    let name = if rule == Rule::Admin { "absent" } else { "dev" };
    path.replace("{name}", name)
        .replace("{session}", SESSION)
        .replace("{digest}", &"ab".repeat(32))
}

#[tokio::test]
async fn every_route_of_the_router_has_exactly_one_rule() {
    let table: BTreeSet<(String, Method)> = HTTP_ROUTES
        .iter()
        .map(|r| (r.path.to_owned(), r.method.clone()))
        .collect();
    assert_eq!(
        table.len(),
        HTTP_ROUTES.len(),
        "a route is in the table twice"
    );
    assert_eq!(
        routed().await,
        table,
        "routed (path, method) vs access rules"
    );
}

#[test]
fn every_agent_api_method_has_a_rule() {
    let package = AGENT_PROTO
        .lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .unwrap()
        .trim_end_matches(';');
    let service = AGENT_PROTO
        .lines()
        .find_map(|l| l.trim().strip_prefix("service "))
        .unwrap()
        .trim_end_matches(" {");
    let defined: BTreeSet<String> = AGENT_PROTO
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .map(|l| format!("/{package}.{service}/{}", l.split('(').next().unwrap()))
        .collect();
    assert_eq!(defined.len(), 2, "{defined:?}");
    let ruled: BTreeSet<String> = GRPC_METHODS.iter().map(|(m, _)| (*m).to_owned()).collect();
    assert_eq!(defined, ruled);
}

/// A credential a request can carry: whose, a label, the value.
#[derive(Clone, Debug)]
enum Credential {
    None,
    Bearer(Who, &'static str, String),
    Cookie(Who, &'static str, String),
}

impl Credential {
    fn label(&self) -> &str {
        match self {
            Credential::None => "none",
            Credential::Bearer(_, l, _) | Credential::Cookie(_, l, _) => l,
        }
    }
}

/// What a credential should get from a route.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// A public route: no credential needed, none refused (the forms' own
    /// CSRF checks aside).
    Public,
    Allowed,
    Unauthorized,
    Forbidden,
    /// A web page without a session: sent to the sign-in form.
    SignIn,
}

/// Who a credential is, for the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Admin,
    Auditor,
    Agent,
    Invalid,
}

fn expect(rule: Rule, method: &Method, credential: &Credential) -> Expect {
    let reads = *method == Method::GET;
    match (rule, credential) {
        (Rule::Public, _) => Expect::Public,
        (Rule::Page, Credential::Cookie(Who::Admin | Who::Auditor, _, _)) => Expect::Allowed,
        (Rule::Page, _) => Expect::SignIn,
        (Rule::Agent, _) => unreachable!("no HTTP route is for agents"),
        (_, Credential::None) => Expect::Unauthorized,
        (Rule::Read, Credential::Cookie(who, _, _)) => match who {
            Who::Admin | Who::Auditor if reads => Expect::Allowed,
            _ => Expect::Unauthorized,
        },
        (Rule::Admin, Credential::Cookie(who, _, _)) => match who {
            // A cookie never makes a change, even an admin's.
            Who::Admin | Who::Auditor => Expect::Forbidden,
            _ => Expect::Unauthorized,
        },
        (rule, Credential::Bearer(who, _, _)) => match (rule, who) {
            (_, Who::Invalid) => Expect::Unauthorized,
            (_, Who::Admin) | (Rule::Read, Who::Auditor) => Expect::Allowed,
            _ => Expect::Forbidden,
        },
    }
}

/// The status of one request (the body is not read: the stream never
/// ends).
async fn status(addr: SocketAddr, method: &Method, path: &str, credential: &Credential) -> u16 {
    use http_body_util::Full;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let mut builder = http::Request::builder()
        .method(method.clone())
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    match credential {
        Credential::None => {}
        Credential::Bearer(_, _, token) => {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        Credential::Cookie(_, _, cookie) => builder = builder.header("cookie", cookie),
    }
    let response = sender
        .send_request(builder.body(Full::new(bytes::Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    drop(response);
    conn.abort();
    status
}

fn matches(expected: &Expect, status: u16, method: &Method, path: &str) -> bool {
    match expected {
        // The sign-in and sign-out forms refuse a POST without their CSRF
        // token (403), whoever sends it.
        Expect::Public => status != 401 && (status != 403 || ["/login", "/logout"].contains(&path)),
        Expect::Allowed => ![401, 403, 303, 405, 500].contains(&status),
        Expect::Unauthorized => status == 401,
        Expect::Forbidden => status == 403,
        // The sign-in form answers a POST of its own; pages redirect.
        Expect::SignIn => status == 303 && (*method == Method::GET || path == "/logout"),
    }
}

/// The server with one credential of each kind.
struct World {
    server: Server,
    _dir: tempfile::TempDir,
    credentials: Vec<Credential>,
    agent_token: String,
}

async fn world() -> World {
    let (server, dir) = Server::start().await;
    let workspace = server.workspace("dev").await;
    let admin = server.admin();
    let named_admin = admin
        .create_token(&CreateToken {
            name: "ops".into(),
            role: "admin".into(),
        })
        .await
        .unwrap()
        .token;
    let auditor = admin
        .create_token(&CreateToken {
            name: "carol".into(),
            role: "auditor".into(),
        })
        .await
        .unwrap()
        .token;
    let revoked = admin
        .create_token(&CreateToken {
            name: "gone".into(),
            role: "auditor".into(),
        })
        .await
        .unwrap()
        .token;
    let (admin_cookie, _) = sign_in_with(server.addr, ADMIN_TOKEN).await;
    let (auditor_cookie, _) = sign_in_with(server.addr, &auditor).await;
    let (revoked_cookie, _) = sign_in_with(server.addr, &revoked).await;
    admin.revoke_token("gone").await.unwrap();
    // A well-formed token of each kind that the server never issued.
    let forged_api = format!("wtk1_{}_{}", uuid::Uuid::new_v4().simple(), "ab".repeat(32));
    let forged_agent = format!("wat1_{}_{}", uuid::Uuid::new_v4().simple(), "ab".repeat(32));
    let credentials = vec![
        Credential::None,
        Credential::Bearer(Who::Admin, "bootstrap admin token", ADMIN_TOKEN.into()),
        Credential::Bearer(Who::Admin, "named admin token", named_admin),
        Credential::Bearer(Who::Auditor, "auditor token", auditor),
        Credential::Bearer(Who::Agent, "agent token", workspace.agent_token.clone()),
        Credential::Bearer(Who::Invalid, "revoked auditor token", revoked),
        Credential::Bearer(Who::Invalid, "unknown api token", forged_api),
        Credential::Bearer(Who::Invalid, "unknown agent token", forged_agent),
        Credential::Bearer(Who::Invalid, "garbage token", "not-a-token".into()),
        Credential::Cookie(Who::Admin, "admin cookie", admin_cookie.unwrap()),
        Credential::Cookie(Who::Auditor, "auditor cookie", auditor_cookie.unwrap()),
        Credential::Cookie(
            Who::Invalid,
            "revoked auditor's cookie",
            revoked_cookie.unwrap(),
        ),
        Credential::Cookie(
            Who::Invalid,
            "forged cookie",
            format!(
                "warden_session=v1.admin.99999999999.{}.{}",
                "0".repeat(32),
                "0".repeat(64)
            ),
        ),
    ];
    World {
        server,
        _dir: dir,
        credentials,
        agent_token: workspace.agent_token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_route_answers_each_credential_as_its_rule_says() {
    let world = world().await;
    let mut failures = Vec::new();
    let mut checked = 0;
    for route in HTTP_ROUTES {
        let path = concrete(route.path, route.rule);
        for credential in &world.credentials {
            let expected = expect(route.rule, &route.method, credential);
            let got = status(world.server.addr, &route.method, &path, credential).await;
            checked += 1;
            if !matches(&expected, got, &route.method, &path) {
                failures.push(format!(
                    "{} {} with {}: expected {expected:?}, got {got}",
                    route.method,
                    path,
                    credential.label()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, HTTP_ROUTES.len() * world.credentials.len());
    world.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_agent_api_method_answers_each_credential_as_its_rule_says() {
    let world = world().await;
    let url = world.server.url();
    for (method, rule) in GRPC_METHODS {
        assert_eq!(*rule, Rule::Agent);
        for credential in &world.credentials {
            let Credential::Bearer(who, label, token) = credential else {
                continue;
            };
            let mut agent = Agent::connect(&url, token).await;
            let result = match method.rsplit('/').next().unwrap() {
                "GetManifest" => agent.manifest().await.map(drop),
                "ReportBoundaryLogs" => agent.report(vec![]).await.map(drop),
                other => panic!("no call for agent api method {other}: add it here"),
            };
            let code = result.err().map(|s| s.code());
            let expected = match who {
                Who::Agent => None,
                Who::Admin | Who::Auditor => Some(tonic::Code::PermissionDenied),
                Who::Invalid => Some(tonic::Code::Unauthenticated),
            };
            assert_eq!(code, expected, "{method} with {label}");
        }
        let mut anonymous = Agent::connect(&url, "").await;
        anonymous.token = None;
        let code = match method.rsplit('/').next().unwrap() {
            "GetManifest" => anonymous.manifest().await.err().map(|s| s.code()),
            _ => anonymous.report(vec![]).await.err().map(|s| s.code()),
        };
        assert_eq!(
            code,
            Some(tonic::Code::Unauthenticated),
            "{method} without a token"
        );
    }
    assert!(!world.agent_token.is_empty());
    world.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_sign_in_to_the_page_and_agents_do_not() {
    let world = world().await;
    let addr = world.server.addr;
    let admin = world.server.admin();
    let auditor = admin
        .create_token(&CreateToken {
            name: "dave".into(),
            role: "auditor".into(),
        })
        .await
        .unwrap()
        .token;
    let (cookie, page) = sign_in_with(addr, &auditor).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let cookie = cookie.expect("an auditor gets a session");
    let feed = support::web::get(addr, "/", Some(&cookie)).await;
    assert_eq!(feed.status, 200);
    assert!(feed.body.contains("auditor"), "the page names the role");

    let (cookie_for_agent, page) = sign_in_with(addr, &world.agent_token).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(cookie_for_agent.is_none());
    assert!(
        page.body.contains("agent token cannot sign in"),
        "{}",
        page.body
    );

    // Revoking the token ends its sessions at once.
    admin.revoke_token("dave").await.unwrap();
    let feed = support::web::get(addr, "/", Some(&cookie)).await;
    assert_eq!(feed.status, 303);
    let api = status(
        addr,
        &Method::GET,
        "/api/v1/records",
        &Credential::Cookie(Who::Invalid, "revoked", cookie),
    )
    .await;
    assert_eq!(api, 401);
    let client = ApiClient::new(&world.server.url(), auditor, None).unwrap();
    assert!(matches!(
        client.list_workspaces().await.unwrap_err(),
        warden_api::ClientError::Api { status, .. } if status == 401
    ));
    world.server.stop().await.unwrap();
}
