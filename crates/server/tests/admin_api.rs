//! The workspace admin API over HTTP, through the same client the
//! `warden workspace` commands use.

mod support;

use support::*;
use warden_api::workspaces::CreateWorkspace;
use warden_api::{ApiClient, ClientError};

fn create(name: &str, owner: &str) -> CreateWorkspace {
    CreateWorkspace {
        name: name.into(),
        owner: owner.into(),
        agent_name: None,
        startup_script: None,
    }
}

fn status_of(result: Result<impl std::fmt::Debug, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api { status, message }) => (status.as_u16(), message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn workspaces_are_created_listed_rotated_and_deleted() {
    let (server, _dir) = Server::start().await;
    let admin = server.admin();
    let dev = admin
        .create_workspace(&create("dev", "alice"))
        .await
        .unwrap();
    assert_eq!(
        (
            dev.workspace_name.as_str(),
            dev.owner.as_str(),
            dev.agent_name.as_str()
        ),
        ("dev", "alice", "main")
    );
    assert!(dev.agent_token.starts_with("wat1_"));
    let ops = admin
        .create_workspace(&CreateWorkspace {
            agent_name: Some("runner".into()),
            startup_script: Some("make serve".into()),
            ..create("ops", "bob")
        })
        .await
        .unwrap();

    let listed = admin.list_workspaces().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|w| (w.workspace_name.as_str(), w.agent_name.as_str()))
            .collect::<Vec<_>>(),
        vec![("dev", "main"), ("ops", "runner")]
    );
    assert_eq!(listed[1].startup_script, "make serve");
    assert_eq!(listed[1].workspace_id, ops.workspace_id);
    // Tokens are never listed.
    let body = server.get("/api/v1/workspaces").await;
    assert_eq!(body.0, 401, "the admin API needs the admin token");

    let rotated = admin.rotate_token("dev").await.unwrap();
    assert_ne!(rotated.agent_token, dev.agent_token);
    let deleted = admin.delete_workspace("dev").await.unwrap();
    assert_eq!(deleted.workspace_id, dev.workspace_id);
    assert_eq!(admin.list_workspaces().await.unwrap().len(), 1);
    // The name is free again.
    let again = admin
        .create_workspace(&create("dev", "carol"))
        .await
        .unwrap();
    assert_ne!(again.workspace_id, dev.workspace_id);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let (server, _dir) = Server::start().await;
    let admin = server.admin();
    admin
        .create_workspace(&create("dev", "alice"))
        .await
        .unwrap();

    let (status, message) = status_of(admin.create_workspace(&create("dev", "bob")).await);
    assert_eq!(status, 409);
    assert!(message.contains("\"dev\""), "{message}");

    for (name, owner) in [
        ("-x", "alice"),
        ("a/b", "alice"),
        ("", "alice"),
        ("ok", ""),
        ("ok", "a\u{1b}[31m"),
    ] {
        let (status, message) = status_of(admin.create_workspace(&create(name, owner)).await);
        assert_eq!(status, 400, "{name:?} {owner:?}: {message}");
    }
    let (status, _) = status_of(
        admin
            .create_workspace(&CreateWorkspace {
                agent_name: Some("bad name".into()),
                ..create("ok", "alice")
            })
            .await,
    );
    assert_eq!(status, 400);

    assert_eq!(status_of(admin.rotate_token("nope").await).0, 404);
    assert_eq!(status_of(admin.delete_workspace("nope").await).0, 404);
    assert_eq!(status_of(admin.delete_workspace("a/b").await).0, 404);

    let wrong = ApiClient::new(&server.url(), "wrong-token-wrong-token", None).unwrap();
    let (status, message) = status_of(wrong.list_workspaces().await);
    assert_eq!(status, 401);
    assert!(message.contains("invalid token"), "{message}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_json_is_a_bad_request() {
    use http_body_util::{BodyExt, Full};
    let (server, _dir) = Server::start().await;
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::post("/api/v1/workspaces")
        .header("host", server.addr.to_string())
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from_static(
            b"{\"name\": \"dev\", \"owner\": 3, \"extra\": true}",
        )))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 400);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(error["error"].as_str().unwrap().len() > 5, "{error}");
    server.stop().await.unwrap();
}
