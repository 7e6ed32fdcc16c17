//! The OpenAPI document: the server serves exactly the checked-in
//! `openapi.json`, and every route of the HTTP router (path and method) is
//! in it, and nothing else.
//!
//! After changing the API, regenerate the file with
//! `WARDEN_UPDATE_OPENAPI=1 cargo test -p warden-server --test openapi`.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use http::{Method, Request, StatusCode};
use support::*;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use warden_server::auth::hash_token;
use warden_server::http::{AppState, router};
use warden_server::metrics::Metrics;
use warden_store::{SqliteStore, Store};

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

#[tokio::test]
async fn the_served_document_is_the_checked_in_file() {
    let (server, _dir) = Server::start().await;
    let (status, served) = server.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    if std::env::var_os("WARDEN_UPDATE_OPENAPI").is_some() {
        std::fs::write(CHECKED_IN, &served).unwrap();
    }
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap();
    assert!(
        served == checked_in,
        "openapi.json is out of date: regenerate it with WARDEN_UPDATE_OPENAPI=1 cargo test -p warden-server --test openapi"
    );
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    server.stop().await.unwrap();
}

/// The paths the router knows, read from its `Debug` output (axum offers no
/// other way to list routes). If axum changes that output this finds no
/// path and the test fails loudly rather than passing.
fn router_paths(app: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{app:?}");
    // The fallback router (what answers unrouted paths) comes after the
    // routes; its catch-all paths are not routes.
    let routes = debug.split("fallback_router").next().unwrap_or_default();
    let mut paths = BTreeSet::new();
    for quoted in routes.split('"').skip(1).step_by(2) {
        if quoted.starts_with('/') && !quoted.contains("__private__") {
            paths.insert(quoted.to_owned());
        }
    }
    paths
}

#[tokio::test]
async fn every_route_of_the_router_is_documented_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("w.db")).await.unwrap());
    let shutdown = CancellationToken::new();
    let app = router(Arc::new(AppState {
        store: Arc::clone(&store),
        metrics: Arc::new(Metrics::new()),
        admin_token: hash_token(ADMIN_TOKEN),
        signing_key: Arc::new(warden_evidence::key::SigningKey::generate().unwrap().0),
        token_use: Default::default(),
        sessions: warden_server::web::session::Sessions::new([0; 32], false),
        shutdown: shutdown.clone(),
        max_response_bytes: warden_server::DEFAULT_MAX_RESPONSE_BYTES,
    }));
    let doc: serde_json::Value = serde_json::from_str(warden_server::openapi::text()).unwrap();
    let documented: BTreeSet<(String, Method)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|m| (path.clone(), m.to_uppercase().parse::<Method>().unwrap()))
                .collect::<Vec<_>>()
        })
        .collect();

    let paths = router_paths(&app);
    assert!(paths.contains("/api/v1/records"), "{paths:?}");
    let documented_paths: BTreeSet<String> = documented.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(paths, documented_paths, "router paths vs documented paths");

    // Which methods each path answers: 405 means none.
    let mut routed = BTreeSet::new();
    for path in &paths {
        let concrete = path.replace("{name}", "x").replace("{session}", "s");
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            let request = Request::builder()
                .method(method.clone())
                .uri(&concrete)
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .body(axum::body::Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            if response.status() != StatusCode::METHOD_NOT_ALLOWED {
                routed.insert((path.clone(), method));
            }
        }
    }
    assert_eq!(routed, documented, "routed (path, method) vs documented");
    shutdown.cancel();
    store.close().await.unwrap();
}
