//! Coder's session-log read API, golden: `GET
//! /api/v2/agent-firewall/sessions/{id}/logs` with exclusive bounds,
//! ascending sequence order, the default limit of 100, the reference's row
//! fields, and 404 for a session the caller may not see.

mod support;

use serde_json::{Value, json};
use support::*;

async fn get(server: &Server, path: &str, token: Option<&str>) -> (u16, Value) {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut request = http::Request::get(path).header("host", server.addr.to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = sender
        .send_request(request.body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn path(query: &str) -> String {
    format!("/api/v2/agent-firewall/sessions/{SESSION}/logs{query}")
}

#[tokio::test]
async fn session_logs_come_in_sequence_order_between_exclusive_bounds() {
    let (server, _dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    // 150 records, sent out of order across batches.
    let mut high: Vec<_> = (75..150)
        .map(|s| {
            log(
                s,
                s % 2 == 0,
                "GET",
                &format!("https://example.com/{s}"),
                if s % 2 == 0 { "domain=example.com" } else { "" },
            )
        })
        .collect();
    high.reverse();
    agent
        .report(vec![batch(Some(SESSION), high)])
        .await
        .unwrap();
    let low = (0..75)
        .map(|s| {
            log(
                s,
                s % 2 == 0,
                "GET",
                &format!("https://example.com/{s}"),
                if s % 2 == 0 { "domain=example.com" } else { "" },
            )
        })
        .collect();
    agent.report(vec![batch(Some(SESSION), low)]).await.unwrap();

    let seqs = |body: &Value| -> Vec<i64> {
        body["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["sequence_number"].as_i64().unwrap())
            .collect()
    };
    // Default limit 100, ascending.
    let (status, body) = get(&server, &path(""), Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seqs(&body), (0..100).collect::<Vec<_>>());
    // Exclusive bounds.
    let (_, body) = get(
        &server,
        &path("?seq_after=10&seq_before=15"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(seqs(&body), [11, 12, 13, 14]);
    let (_, body) = get(&server, &path("?seq_after=140&limit=3"), Some(ADMIN_TOKEN)).await;
    assert_eq!(seqs(&body), [141, 142, 143]);
    let (_, body) = get(&server, &path("?seq_before=0"), Some(ADMIN_TOKEN)).await;
    assert_eq!(seqs(&body), Vec::<i64>::new());
    // The reference's row fields, golden (captured_at is the server's
    // receive time, checked apart).
    let (_, body) = get(
        &server,
        &path("?seq_after=11&seq_before=14"),
        Some(ADMIN_TOKEN),
    )
    .await;
    let mut rows = body["logs"].as_array().unwrap().clone();
    for row in &mut rows {
        let captured: jiff::Timestamp = row["captured_at"].as_str().unwrap().parse().unwrap();
        assert!(captured > "2025-12-08T20:58:46Z".parse().unwrap());
        row["captured_at"] = json!("<receive time>");
    }
    assert_eq!(
        Value::Array(rows),
        json!([
            { "sequence_number": 12, "method": "GET", "detail": "https://example.com/12", "matched_rule": "domain=example.com", "created_at": "2025-12-08T20:58:46.093456789Z", "captured_at": "<receive time>" },
            { "sequence_number": 13, "method": "GET", "detail": "https://example.com/13", "matched_rule": "", "created_at": "2025-12-08T20:58:46.093456789Z", "captured_at": "<receive time>" }
        ])
    );
    // Bad parameters are named.
    let (status, body) = get(&server, &path("?seq_after=x"), Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("seq_after"),
        "{body}"
    );
    // Unknown sessions: 404. No or a wrong token: 401.
    let (status, _) = get(
        &server,
        "/api/v2/agent-firewall/sessions/nope/logs",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get(&server, &path(""), None).await;
    assert_eq!(status, 401);
    let (status, _) = get(&server, &path(""), Some("not-the-admin-token-at-all")).await;
    assert_eq!(status, 401);
    server.stop().await.unwrap();
}
