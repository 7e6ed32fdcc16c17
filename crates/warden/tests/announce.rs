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
        value["message"]
            .as_str()
            .unwrap()
            .starts_with("warden server listening on "),
        "{json}"
    );
}
