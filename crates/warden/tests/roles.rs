//! Roles from the command line, with the real binary: `warden token
//! create|list|revoke`, an auditor token that reads but cannot change,
//! revocation that takes effect at once, and `warden admin-events`
//! showing who did what.

mod support;

use std::process::Output;

use support::dirs;
use support::process::{BoundaryLines, warden};
use support::server::ServerProcess;

async fn run(server: &ServerProcess, args: &[&str], token: Option<&str>) -> Output {
    let mut command = warden();
    command.args(args).arg("--data-dir").arg(&server.data_dir);
    if let Some(token) = token {
        command.arg("--token").arg(token);
    }
    command.output().await.expect("running warden")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_created_listed_used_and_revoked() {
    let dirs = dirs();
    let mut server = ServerProcess::start(&dirs.server, &[], BoundaryLines::Keep).await;

    let created = run(
        &server,
        &["token", "create", "--role", "auditor", "--name", "carol"],
        None,
    )
    .await;
    assert_eq!(created.status.code(), Some(0), "{}", text(&created.stderr));
    let token = text(&created.stdout);
    let lines: Vec<&str> = token.lines().collect();
    assert_eq!(lines.len(), 1, "the token alone on stdout: {token:?}");
    let token = lines[0].to_owned();
    assert!(token.starts_with("wtk1_"), "{token}");

    let json = run(
        &server,
        &[
            "token", "create", "--role", "admin", "--name", "ops", "--json",
        ],
        None,
    )
    .await;
    assert_eq!(json.status.code(), Some(0), "{}", text(&json.stderr));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["name"], "ops");
    assert_eq!(v["role"], "admin");
    assert!(v["token"].as_str().unwrap().starts_with("wtk1_"));

    // The name is taken: exit 1, one line.
    let again = run(
        &server,
        &["token", "create", "--role", "auditor", "--name", "carol"],
        None,
    )
    .await;
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        text(&again.stderr).lines().count(),
        1,
        "{}",
        text(&again.stderr)
    );
    // A bad role is a usage error.
    let bad = run(
        &server,
        &["token", "create", "--role", "agent", "--name", "x"],
        None,
    )
    .await;
    assert_eq!(bad.status.code(), Some(2));

    // The list shows names and roles, never a token or a hash.
    let list = run(&server, &["token", "list", "--json"], None).await;
    assert_eq!(list.status.code(), Some(0), "{}", text(&list.stderr));
    let listed: Vec<serde_json::Value> = text(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<(&str, &str)> = listed
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["role"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("carol", "auditor"), ("ops", "admin")]);
    assert!(!text(&list.stdout).contains(&token[5..]));
    assert!(
        listed
            .iter()
            .all(|t| t.get("token").is_none() && t.get("token_hash").is_none())
    );
    let table = run(&server, &["token", "list"], None).await;
    assert!(
        text(&table.stdout).contains("carol"),
        "{}",
        text(&table.stdout)
    );

    // The auditor reads, and may not change anything (exit 2: its role).
    let read = run(&server, &["workspace", "list", "--json"], Some(&token)).await;
    assert_eq!(read.status.code(), Some(0), "{}", text(&read.stderr));
    let events = run(&server, &["admin-events", "--json"], Some(&token)).await;
    assert_eq!(events.status.code(), Some(0), "{}", text(&events.stderr));
    let change = run(
        &server,
        &["workspace", "create", "--name", "x", "--owner", "eve"],
        Some(&token),
    )
    .await;
    assert_eq!(change.status.code(), Some(2), "{}", text(&change.stderr));
    assert!(
        text(&change.stderr).contains("auditor"),
        "{}",
        text(&change.stderr)
    );
    let mint = run(
        &server,
        &["token", "create", "--role", "admin", "--name", "mine"],
        Some(&token),
    )
    .await;
    assert_eq!(
        mint.status.code(),
        Some(2),
        "an auditor cannot mint an admin token"
    );

    // Revoked: it stops working at once.
    let revoke = run(&server, &["token", "revoke", "carol"], None).await;
    assert_eq!(revoke.status.code(), Some(0), "{}", text(&revoke.stderr));
    let after = run(&server, &["workspace", "list"], Some(&token)).await;
    assert_eq!(after.status.code(), Some(2), "{}", text(&after.stderr));
    // An unknown name: exit 1 with a one-line message.
    let unknown = run(&server, &["token", "revoke", "carol"], None).await;
    assert_eq!(unknown.status.code(), Some(1));
    let message = text(&unknown.stderr);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("token \"carol\" not found"), "{message}");

    // Every change is an admin event, with who did it.
    let events = run(&server, &["admin-events", "--json"], None).await;
    let events: Vec<serde_json::Value> = text(&events.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
                e["actor"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("token.create", "carol", "admin"),
            ("token.create", "ops", "admin"),
            ("token.revoke", "carol", "admin"),
        ]
    );
    for e in &events {
        assert!(
            !e.to_string().contains(&token[5..]),
            "no secret in an event"
        );
    }
    server.stop().await;
}
