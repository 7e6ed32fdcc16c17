//! `/metrics` of the control plane passes `promtool check metrics`
//! (Debian's `prometheus` package), with every kind of series present:
//! ingest, exports, retention, connections.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::*;
use warden_server::LineFormat;
use warden_server::export::{ExportSettings, SinkTarget};

/// Runs `promtool check metrics` on `text`; fails with what it said.
pub fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("this test needs promtool ({e}): install the Debian package prometheus (apt-get install prometheus), or run scripts/install-test-deps.sh")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_metrics_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), LineFormat::Text);
    config.retention = Some(warden_server::retention::Retention::new(
        std::time::Duration::from_secs(86_400),
    ));
    config.exports = ExportSettings {
        sinks: vec![SinkTarget::Ocsf {
            path: dir.path().join("events.jsonl"),
            max_bytes: 1 << 20,
            keep: 1,
        }],
        ..ExportSettings::default()
    };
    let server = Server::start_with(config, dir.path(), Capture::new()).await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    agent
        .report(vec![batch(Some(SESSION), logs(0..5))])
        .await
        .unwrap();
    server.lines.wait_for(5).await;
    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("warden_records_ingested_total"),
        "{metrics}"
    );
    promtool_check(&metrics);
    server.stop().await.unwrap();
}
