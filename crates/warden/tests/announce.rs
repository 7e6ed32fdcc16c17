//! The lines scripts wait for print whatever the log level: `warden server
//! listening on ...` with `WARDEN_LOG=error` (or `off`), in text and JSON.

mod support;

use std::process::Stdio;

use support::process::warden;
use support::{WAIT, dirs};
use tokio::io::{AsyncBufReadExt, BufReader};

async fn listening_line(log: &str, format: &str) -> String {
    let dirs = dirs();
    let mut child = warden()
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            format,
            "--data-dir",
        ])
        .arg(&dirs.server)
        .env("WARDEN_LOG", log)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("warden server listening on http://127.0.0.1:") {
                return line;
            }
        }
        panic!("the server exited without its listening line");
    })
    .await
    .expect("no listening line");
    child.kill().await.unwrap();
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listening_line_prints_whatever_the_log_level() {
    for level in ["error", "off", "warn"] {
        listening_line(level, "text").await;
    }
    let json = listening_line("error", "json").await;
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        value["msg"]
            .as_str()
            .unwrap()
            .starts_with("warden server listening on "),
        "{json}"
    );
}

/// In `--log-format json` every stderr line has the boundary line's keys:
/// operational lines, boundary lines and a usage error alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_json_mode_every_stderr_line_has_ts_level_and_msg() {
    use support::process::BoundaryLines;
    use support::server::ServerProcess;
    let dirs = dirs();
    let json: Vec<std::ffi::OsString> = vec!["--log-format".into(), "json".into()];
    let mut server = ServerProcess::start(&dirs.server, &json, BoundaryLines::Keep).await;
    server.create_workspace("dev", "alice", &[]).await;
    server.stop().await;
    let lines = server.process.lines().to_vec();
    assert!(lines.len() >= 4, "{lines:?}");
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["ts", "level", "msg"] {
            assert!(value[key].is_string(), "{key} in {line}");
        }
        assert!(
            value["ts"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .is_ok(),
            "{line}"
        );
        assert!(
            matches!(
                value["level"].as_str(),
                Some("info" | "warn" | "error" | "debug")
            ),
            "{line}"
        );
    }
    // A usage error of a JSON-mode server is a JSON line too, exit 2.
    let output = warden()
        .args(["server", "--log-format", "json", "--bogus-flag"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.matches('\n').count(), 1, "{stderr}");
    let value: serde_json::Value = serde_json::from_str(&stderr).unwrap();
    assert_eq!(value["level"], "error");
    assert!(
        value["msg"].as_str().unwrap().contains("--bogus-flag"),
        "{stderr}"
    );
}
