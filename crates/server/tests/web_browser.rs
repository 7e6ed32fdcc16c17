//! The web page in a real browser: headless Chromium driven by
//! `tests/browser/web.mjs` (playwright-core). This test starts the control
//! plane, stores records (hostile text in every field, a session with a
//! gap), runs the script, and sends the records it asks for once it is
//! signed in (so they must arrive live). The script signs in, checks that
//! hostile text shows as text and nothing runs (no dialog, no request to
//! another address, no CSP violation), pauses and resumes the feed,
//! filters to denials, opens the overview and the session with the gap,
//! checks the dark theme, the phone width and keyboard reach, and signs
//! out. Screenshots land in `target/web-screenshots/`.
//!
//! Needs Chromium and the script's npm package: `scripts/install-test-deps.sh`
//! installs both (Debian's `chromium`, and `npm ci` in `tests/browser`).
//! Without them this test fails, saying so; it never skips.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::web::*;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use warden_proto::wire;

/// The whole browser run, a deadline (not a synchronisation).
const BROWSER_DEADLINE: Duration = Duration::from_secs(240);
const GAP_SESSION: &str = "5e55f00d-0000-4000-8000-00000000a9a9";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("WARDEN_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Fails, saying how to install them, when the browser or the driver is
/// missing.
fn check_prerequisites() {
    let advice = "install the browser test's dependencies with `scripts/install-test-deps.sh` \
                  (apt-get install chromium; npm ci in crates/server/tests/browser)";
    let chromium = chromium();
    assert!(
        chromium.exists(),
        "{} not found (set WARDEN_CHROMIUM to another Chromium): {advice}",
        chromium.display()
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node not found on PATH: {advice}"
    );
    assert!(
        browser_dir()
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "playwright-core is not installed in {}: {advice}",
        browser_dir().display()
    );
}

fn screenshots_dir() -> PathBuf {
    // The workspace's target dir (tests run with the package dir as cwd).
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join("web-screenshots")
}

fn batch_at(session: &str, logs: Vec<wire::BoundaryLog>) -> warden_proto::wire::agentapi::Batch {
    batch(Some(session), logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_in_chromium() {
    check_prerequisites();
    let (server, _dir) = Server::start().await;
    let dev = server.workspace("dev").await;
    let mut agent = server.agent(&dev.agent_token).await;
    // Stored before sign-in: rendered by the server.
    send(&mut agent, vec![hostile_batch(SESSION, 0)]).await;
    // A session with sequence numbers 3..=5 missing.
    let now = wire_now();
    let gap_logs = [0, 1, 2, 6, 7]
        .into_iter()
        .map(|s| wire::BoundaryLog {
            time: Some(now),
            ..log(
                s,
                s % 2 == 0,
                "GET",
                &format!("https://gap.example/{s}"),
                "",
            )
        })
        .collect();
    send(&mut agent, vec![batch_at(GAP_SESSION, gap_logs)]).await;
    // What a feed usually shows, newest (on top of the hostile ones).
    let usual = [
        (true, "GET", "https://github.com/rust-lang/rust/pulls?q=is%3Aopen", "domain=github.com"),
        (false, "POST", "https://pastebin.example/api/api_post.php", ""),
        (true, "GET", "https://static.crates.io/crates/serde/serde-1.0.228.crate", "domain=*.crates.io"),
        (false, "GET", "http://169.254.169.254/latest/meta-data/iam/security-credentials/", ""),
        (true, "GET", "https://pypi.org/simple/requests/", "domain=pypi.org"),
        (false, "PUT", "https://uploads.unknown-cdn.example/v2/blobs/upload?digest=sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", ""),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (allowed, method, url, rule))| wire::BoundaryLog {
        time: Some(wire_now()),
        ..log(i as i32, allowed, method, url, rule)
    })
    .collect();
    send(
        &mut agent,
        vec![batch_at("9d2c61e0-5a3b-4c1e-8f7a-2b9e4d6c8a10", usual)],
    )
    .await;

    let shots = screenshots_dir();
    let mut child = tokio::process::Command::new("node")
        .arg(browser_dir().join("web.mjs"))
        .current_dir(browser_dir())
        .env("WARDEN_URL", server.url())
        .env("WARDEN_TOKEN", ADMIN_TOKEN)
        .env(
            "WARDEN_GAP_PATH",
            format!("/workspaces/dev/sessions/{GAP_SESSION}"),
        )
        .env("WARDEN_SCREENSHOTS", &shots)
        .env("WARDEN_CHROMIUM", chromium())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting node");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        text
    });

    let run = async {
        let mut outcome = None;
        let mut next_seq = 100;
        while let Some(line) = stdout.next_line().await.unwrap() {
            match line.as_str() {
                "need live" => {
                    // The hostile records again (another session) and a
                    // marker, all after sign-in: only the stream shows them.
                    let mut b = hostile_batch("live-session", next_seq);
                    if let Some(logs) = b.logs.as_mut() {
                        logs.logs.push(log(
                            next_seq + 50,
                            false,
                            "GET",
                            "https://live.example/arrived",
                            "",
                        ));
                    }
                    next_seq += 100;
                    send(&mut agent, vec![b]).await;
                }
                "need paused" => {
                    send(
                        &mut agent,
                        vec![batch_at(
                            "live-session",
                            vec![log(
                                next_seq,
                                false,
                                "GET",
                                "https://paused.example/held",
                                "",
                            )],
                        )],
                    )
                    .await;
                    next_seq += 1;
                }
                other if other.starts_with("ok") => {
                    outcome = Some(other.to_owned());
                    continue;
                }
                other => {
                    eprintln!("web.mjs: {other}");
                    continue;
                }
            }
            stdin.write_all(b"sent\n").await.unwrap();
            stdin.flush().await.unwrap();
        }
        outcome
    };
    let outcome = tokio::time::timeout(BROWSER_DEADLINE, run)
        .await
        .expect("the browser run did not finish in time");
    let status = child.wait().await.unwrap();
    let errors = errors.await.unwrap();
    assert!(
        status.success() && outcome.is_some(),
        "the browser checks failed ({status}):\n{errors}"
    );
    let outcome = outcome.unwrap();
    eprintln!("{outcome}");
    // Every request the pages made went to this server.
    assert!(outcome.contains("/api/v1/records/stream"), "{outcome}");
    for shot in [
        "login.png",
        "feed.png",
        "feed-live.png",
        "feed-denied.png",
        "overview.png",
        "session.png",
        "feed-phone.png",
        "feed-dark.png",
    ] {
        assert!(shots.join(shot).exists(), "no screenshot {shot}");
    }
    server.stop().await.unwrap();
}
