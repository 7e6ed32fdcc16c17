//! `warden dev` as a user runs it: the demo's records show up as boundary
//! lines and in the store, the printed instructions work (`warden emit`
//! with the printed socket variable), Ctrl-C stops everything with exit 0,
//! and a second run on the same data dir reuses the workspace.

mod support;

use std::path::Path;

use rustix::process::Signal;
use support::process::{BoundaryLines, WardenProcess, warden};
use support::{dirs, eventually, store};

const READY: &str = "The pipeline keeps running";
const SOCKET_VAR: &str = "export CODER_BOUNDARY_LOG_SOCKET=";

fn dev(data_dir: &Path, args: &[&str]) -> WardenProcess {
    let mut command = warden();
    command
        .arg("dev")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args);
    WardenProcess::spawn("warden dev", command, BoundaryLines::Keep)
}

/// Ctrl-C: everything stops, exit 0.
async fn interrupt(dev: &mut WardenProcess) {
    dev.signal(Signal::INT);
    assert_eq!(dev.exit().await, Some(0), "{}", dev.log());
    assert!(dev.log().ends_with("warden dev: stopped"), "{}", dev.log());
}

/// `warden workspace list --json` on the dev data dir: (name, id) pairs.
async fn workspaces(data_dir: &Path) -> Vec<(String, String)> {
    let output = warden()
        .args(["workspace", "list", "--json", "--data-dir"])
        .arg(data_dir)
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let w: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                w["workspace_name"].as_str().unwrap().to_owned(),
                w["workspace_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_dev_runs_the_demo_and_its_instructions_work_across_runs() {
    let dirs = dirs();
    let data = dirs.root.join("dev");
    let mut first = dev(&data, &["--records", "25", "--rate", "500"]);
    first.wait_line(READY).await;
    eventually("the demo's 25 lines are shown", || {
        let shown = first.boundary_lines();
        async move { shown >= 25 }
    })
    .await;
    // The web page's address and the token that signs in to it.
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let web = first
        .lines()
        .iter()
        .find_map(|l| {
            l.split_once("web page at ")
                .map(|(_, rest)| rest.to_owned())
        })
        .expect("warden dev prints the web page's address");
    assert!(web.starts_with("http://127.0.0.1:"), "{web}");
    assert!(
        web.contains(&format!("sign in with the admin token {}", token.trim())),
        "{web}"
    );
    let socket = first
        .lines()
        .iter()
        .find_map(|l| l.trim().strip_prefix(SOCKET_VAR).map(str::to_owned))
        .expect("the instructions name the socket");
    assert!(
        first.lines().iter().any(|l| l.trim()
            == format!(
                "{} logs --data-dir {}",
                env!("CARGO_BIN_EXE_warden"),
                data.display()
            )),
        "the instructions give the warden logs command:\n{}",
        first.log()
    );
    let listed = workspaces(&data).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].0, "dev");

    // The instructions' emit example, with the socket variable they print.
    let mut emit = warden()
        .arg("emit")
        .env("CODER_BOUNDARY_LOG_SOCKET", &socket)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = emit.stdin.take().unwrap();
    stdin
        .write_all(br#"{"allowed": false, "method": "GET", "url": "https://by-hand.example/"}"#)
        .await
        .unwrap();
    drop(stdin);
    assert_eq!(emit.wait().await.unwrap().code(), Some(0));
    first
        .wait_line(r#"http.url="https://by-hand.example/""#)
        .await;

    // The instructions' query command finds it.
    let logs = warden()
        .args(["logs", "--decision", "deny", "--data-dir"])
        .arg(&data)
        .output()
        .await
        .unwrap();
    assert_eq!(
        logs.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    assert!(String::from_utf8_lossy(&logs.stdout).contains("https://by-hand.example/"));

    let stored = store::records(&data.join("warden.db")).await;
    assert_eq!(stored.len(), 26);
    let demo: Vec<_> = stored
        .iter()
        .filter(|r| r.process == "warden-dev-demo")
        .collect();
    assert_eq!(demo.len(), 25);
    let mut seqs: Vec<i32> = demo.iter().map(|r| r.sequence).collect();
    seqs.sort();
    assert_eq!(seqs, (0..25).collect::<Vec<_>>());
    assert!(demo.iter().any(|r| r.allowed) && demo.iter().any(|r| !r.allowed));
    assert_eq!(first.boundary_lines(), 26);

    interrupt(&mut first).await;
    assert!(!data.join("server-url").exists());
    assert!(!Path::new(&socket).exists(), "the agent removed its socket");

    // Again on the same data dir, without the demo: the workspace is reused.
    let mut second = dev(&data, &["--no-demo"]);
    second.wait_line(READY).await;
    assert_eq!(workspaces(&data).await, listed);
    assert_eq!(store::count(&data.join("warden.db")).await, 26);
    interrupt(&mut second).await;
}

#[tokio::test]
async fn warden_dev_refuses_a_non_loopback_address() {
    let dirs = dirs();
    let output = warden()
        .args(["dev", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dirs.root.join("dev"))
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert!(!dirs.root.join("dev").exists(), "nothing was created");
}

#[tokio::test]
async fn warden_dev_refuses_a_bad_workspace_name_and_stops_what_it_started() {
    let dirs = dirs();
    let data = dirs.root.join("dev");
    let output = warden()
        .args(["dev", "--workspace", "no spaces allowed", "--data-dir"])
        .arg(&data)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("registering workspace"), "{stderr}");
    assert!(stderr.contains("warden dev: stopped"), "{stderr}");
    assert!(!data.join("server-url").exists());
}
