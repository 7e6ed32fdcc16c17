//! What a hostile or careless network client meets on the HTTP and gRPC
//! surface (issue 17): unknown paths, cursors from nowhere, pages of huge
//! records, calls without a token that carry a large body, absurd drop
//! reports, and every way of presenting a token that is not the right one
//! in the right place.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use warden_api::client::ParseRecord;
use warden_api::records::{RecordParams, SessionReportParams, SummaryParams};
use warden_proto::wire::{self, agentapi};
use warden_server::LineFormat;

/// An HTTP/1.1 request; the status, headers and body.
async fn request(
    server: &Server,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", server.addr.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = sender
        .send_request(builder.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn json_error(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"].as_str().unwrap().to_owned()
}

/// An HTTP/2 connection to the server (prior knowledge, as gRPC uses).
async fn h2(
    server: &Server,
) -> hyper::client::conn::http2::SendRequest<
    http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>,
> {
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// A gRPC request to `path` with these metadata entries.
fn grpc_request<B>(path: &str, metadata: &[(&str, &str)], body: B) -> http::Request<B> {
    let mut builder = http::Request::post(format!("http://warden{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in metadata {
        builder = builder.header(*name, *value);
    }
    builder.body(body).unwrap()
}

const REPORT: &str = "/warden.agentapi.v2.AgentApi/ReportBoundaryLogs";

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

#[tokio::test]
async fn unknown_paths_are_404_with_a_json_error() {
    let (server, _dir) = Server::start().await;
    let admin = format!("Bearer {ADMIN_TOKEN}");
    for path in [
        "/api/v1/nonexistent",
        "/api/v2/records",
        "/nope",
        "/workspaces/dev/sessions/s/x",
        "/api/v1/records/x",
    ] {
        for headers in [vec![], vec![("authorization", admin.as_str())]] {
            let (status, response_headers, body) =
                request(&server, Method::GET, path, &headers).await;
            assert_eq!(status, 404, "{path}: {body}");
            assert_eq!(response_headers["content-type"], "application/json");
            assert!(json_error(&body).contains(path), "{body}");
            assert!(grpc_status(&response_headers).is_none());
        }
    }
    // A path that exists, with a method it does not take.
    let (status, _, body) = request(&server, Method::POST, "/healthz", &[]).await;
    assert_eq!(status, 405);
    assert!(json_error(&body).contains("POST"), "{body}");
    // A gRPC client calling a service that does not exist still gets a gRPC
    // status it understands.
    let mut sender = h2(&server).await;
    let response = sender
        .send_request(grpc_request(
            "/other.Service/Method",
            &[],
            Full::new(Bytes::new()).map_err(|e| match e {}).boxed(),
        ))
        .await
        .unwrap();
    assert_eq!(grpc_status(response.headers()), Some(12), "unimplemented");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_stream_cursor_beyond_the_head_is_refused_naming_the_head() {
    let (server, _dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    agent
        .report(vec![batch(Some(SESSION), logs(0..3))])
        .await
        .unwrap();
    let head = server
        .admin()
        .records(&RecordParams::default())
        .await
        .unwrap()
        .head;
    let admin = format!("Bearer {ADMIN_TOKEN}");
    for (path, last_event_id) in [
        ("/api/v1/records/stream", Some("r1000")),
        ("/api/v1/records/stream?after=r7fffffffffffffff", None),
        ("/api/v1/records/stream?after=r1000", None),
    ] {
        let mut headers = vec![("authorization", admin.as_str())];
        if let Some(id) = last_event_id {
            headers.push(("last-event-id", id));
        }
        let (status, _, body) = request(&server, Method::GET, path, &headers).await;
        assert_eq!(status, 400, "{path}: {body}");
        let message = json_error(&body);
        assert!(
            message.contains("beyond the newest record") && message.contains(&head),
            "{message}"
        );
    }
    // The head itself is a fine place to resume from.
    let mut stream = server
        .admin()
        .stream_records(&RecordParams::default(), Some(&head))
        .await
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.id.as_deref(), Some(head.as_str()));
    drop(stream);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn pages_of_huge_records_stay_within_the_byte_budget_and_page_on() {
    const BUDGET: usize = 256 << 10;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), LineFormat::Text);
    config.max_response_bytes = BUDGET;
    let server = Server::start_with(config, dir.path(), Capture::new()).await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    // 40 records with 40 KiB URLs: 1.6 MiB in all, about 6 per page.
    for first in (0..40).step_by(10) {
        let logs = (first..first + 10)
            .map(|seq| {
                let url = format!("https://example.com/{seq}/{}", "a".repeat(40 << 10));
                log(seq, false, "GET", &url, "")
            })
            .collect();
        agent
            .report(vec![batch(Some(SESSION), logs)])
            .await
            .unwrap();
    }
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let (status, _, body) = request(
        &server,
        Method::GET,
        "/api/v1/records?limit=1000",
        &[("authorization", &admin)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.len() <= BUDGET + 1024,
        "a page of {} bytes",
        body.len()
    );

    // Following next gives every record once, newest first.
    let client = server.admin();
    let mut params = RecordParams {
        limit: Some("1000".into()),
        ..RecordParams::default()
    };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = client.records(&params).await.unwrap();
        pages += 1;
        assert!(!page.records.is_empty());
        seen.extend(
            page.records
                .iter()
                .map(|r| r.parse().unwrap().sequence.unwrap()),
        );
        match page.next {
            Some(next) => params.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (0..40).rev().collect::<Vec<_>>());
    assert!(pages >= 6, "{pages} pages");

    // A session report's records page the same way, in sequence order.
    let mut params = SessionReportParams {
        limit: Some("1000".into()),
        ..SessionReportParams::default()
    };
    let mut seen = Vec::new();
    loop {
        let report = client
            .session_report("dev", SESSION, &params)
            .await
            .unwrap();
        let bytes = serde_json::to_string(&report.records).unwrap().len();
        assert!(bytes <= BUDGET, "{bytes} bytes of records");
        seen.extend(
            report
                .records
                .iter()
                .map(|r| r.parse().unwrap().sequence.unwrap()),
        );
        match report.next {
            Some(next) => params.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (0..40).collect::<Vec<_>>());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_agent_token_is_checked_before_the_body_is_read() {
    let (server, _dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let mut sender = h2(&server).await;
    for metadata in [
        vec![("x-warden-agent-api-version", "2.7")],
        vec![
            ("x-warden-agent-api-version", "2.7"),
            (
                "authorization",
                "Bearer wat1_00000000000000000000000000000000_0000000000000000000000000000000000000000000000000000000000000000",
            ),
        ],
    ] {
        // A gRPC frame header announcing a message of almost 16 MiB, and
        // then nothing: the body stays open for as long as the test runs.
        let (body_tx, body_rx) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
        let mut header = vec![0u8];
        header.extend_from_slice(&((16u32 << 20) - 1).to_be_bytes());
        body_tx
            .send(Ok(Frame::data(Bytes::from(header))))
            .await
            .unwrap();
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(body_rx)).boxed();
        let response = tokio::time::timeout(
            DEADLINE,
            sender.send_request(grpc_request(REPORT, &metadata, body)),
        )
        .await
        .expect("no answer until the body arrives: the body is read before the token is checked")
        .unwrap();
        assert_eq!(grpc_status(response.headers()), Some(16), "unauthenticated");
        drop(body_tx);
    }
    // A valid token still works, on the same connection.
    let mut agent = server.agent(&ws.agent_token).await;
    agent.report(vec![batch(None, logs(0..1))]).await.unwrap();

    // Garbage without a token is the caller's fault, not an internal error.
    let mut garbage = vec![0u8, 0, 0, 0, 16];
    garbage.extend_from_slice(&[0xff; 16]);
    let response = sender
        .send_request(grpc_request(
            REPORT,
            &[("x-warden-agent-api-version", "2.7")],
            Full::new(Bytes::from(garbage))
                .map_err(|e| match e {})
                .boxed(),
        ))
        .await
        .unwrap();
    assert_eq!(grpc_status(response.headers()), Some(16));
    let metrics = server.get("/metrics").await.1;
    assert_eq!(
        metric(
            &metrics,
            "warden_agent_rpc_errors_total{method=\"ReportBoundaryLogs\",code=\"unauthenticated\"}"
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "warden_agent_rpc_errors_total{method=\"ReportBoundaryLogs\",code=\"internal\"}"
        ),
        None,
        "{metrics}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn absurd_drop_reports_do_not_wrap_the_totals_around() {
    let (server, _dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    for session in ["s1", "s2"] {
        let mut b = batch(Some(session), logs(0..1));
        b.client_status.push(agentapi::ClientStatus {
            session_id: session.into(),
            status: Some(wire::BoundaryStatus {
                dropped_channel_full: i64::MAX,
                dropped_batch_full: i64::MAX,
                ..Default::default()
            }),
        });
        agent.report(vec![b]).await.unwrap();
    }
    let client = server.admin();
    let per_session: Vec<u64> = client
        .sessions("dev", &Default::default())
        .await
        .unwrap()
        .sessions
        .iter()
        .map(|s| s.session.reported_lost)
        .collect();
    assert_eq!(per_session.len(), 2);
    let summaries = client.summaries(&SummaryParams::default()).await.unwrap();
    let total = summaries.workspaces[0].reported_lost;
    // Never less than any of its parts (a wrapped sum would be).
    assert!(
        per_session.iter().all(|&n| total >= n),
        "total {total} of {per_session:?}"
    );
    server.stop().await.unwrap();
}

/// Collects the server's log lines (the test's runtime runs on one thread,
/// so a default subscriber sees every event of the server).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_admin_route_refuses_every_token_but_the_admin_token_in_its_header() {
    let logs = Logs::default();
    let writer = logs.clone();
    // Everything the server logs, at every level; other crates at info (as
    // an operator runs it).
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("warden_server=trace,info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (server, _dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let doc: serde_json::Value = serde_json::from_str(warden_server::openapi::text()).unwrap();
    let public: BTreeSet<&str> = ["/api/v1/openapi.json", "/healthz", "/metrics"].into();
    let wrong = "wrong-token-wrong-token-wrong-token";
    let agent_bearer = format!("Bearer {}", ws.agent_token);
    let wrong_bearer = format!("Bearer {wrong}");
    let admin_raw = ADMIN_TOKEN.to_owned();
    let admin_basic = format!("Basic {ADMIN_TOKEN}");
    let admin_cookie = format!("token={ADMIN_TOKEN}");
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if public.contains(path.as_str()) {
            continue;
        }
        let concrete = path
            .replace("{name}", "dev")
            .replace("{session}", SESSION)
            .replace("{digest}", &"ab".repeat(32));
        for method in item.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let separator = if concrete.contains('?') { '&' } else { '?' };
            let attempts: Vec<(String, Vec<(&str, &str)>)> = vec![
                (concrete.clone(), vec![]),
                (concrete.clone(), vec![("authorization", &wrong_bearer)]),
                (concrete.clone(), vec![("authorization", &admin_raw)]),
                (concrete.clone(), vec![("authorization", &admin_basic)]),
                (format!("{concrete}{separator}token={ADMIN_TOKEN}"), vec![]),
                (
                    format!("{concrete}{separator}access_token={ADMIN_TOKEN}"),
                    vec![],
                ),
                (
                    format!("{concrete}{separator}admin_token={ADMIN_TOKEN}"),
                    vec![],
                ),
                (concrete.clone(), vec![("x-admin-token", ADMIN_TOKEN)]),
                (concrete.clone(), vec![("cookie", &admin_cookie)]),
            ];
            for (uri, headers) in attempts {
                let (status, response_headers, body) =
                    request(&server, method.clone(), &uri, &headers).await;
                assert_eq!(status, 401, "{method} {uri} {headers:?}: {body}");
                assert_eq!(response_headers["www-authenticate"], "Bearer");
                checked += 1;
            }
            // A valid token of a role that may not use the route: 403.
            let (status, _, body) = request(
                &server,
                method.clone(),
                &concrete,
                &[("authorization", &agent_bearer)],
            )
            .await;
            assert_eq!(
                status, 403,
                "{method} {concrete} with an agent token: {body}"
            );
        }
    }
    assert!(checked >= 80, "checked {checked} requests");
    // Nothing was changed: the workspace is there with its token.
    let mut agent = server.agent(&ws.agent_token).await;
    agent.manifest().await.unwrap();
    // The admin token does not open the agent API either: it is valid, for
    // another role.
    let mut impostor = server.agent(ADMIN_TOKEN).await;
    assert_eq!(
        impostor.manifest().await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    server.stop().await.unwrap();

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("refused a call without a valid token"),
        "the refusals are logged: {logged}"
    );
    let agent_secret = ws.agent_token.rsplit('_').next().unwrap();
    for secret in [ADMIN_TOKEN, wrong, agent_secret] {
        assert!(!logged.contains(secret), "a token in the log: {logged}");
    }
}
