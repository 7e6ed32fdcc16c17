//! `--log-format coder`: the line Coder's control plane prints, through a
//! real server, for records as they are committed and for lines printed
//! again at a restart (`replayed=true`). Byte-exact forms are in the golden
//! tests of `line::format`; here every field comes from real ingest.

mod support;

use support::*;
use warden_server::LineFormat;

/// The line without its leading stamp (the time it was written).
fn after_stamp(line: &str) -> &str {
    // `YYYY-MM-DD HH:MM:SS.mmm` is 23 characters.
    assert!(
        jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S%.3f", &line[..23]).is_ok(),
        "{line}"
    );
    &line[23..]
}

#[tokio::test]
async fn committed_records_print_the_coder_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), LineFormat::Coder).await;
    let ws = server.workspace("some-task").await;
    let mut agent = server.agent(&ws.agent_token).await;
    let allowed = batch(
        Some(SESSION),
        vec![log(
            12,
            true,
            "GET",
            "https://dev.coder.com/",
            "domain=dev.coder.com",
        )],
    );
    let denied = batch(
        None,
        vec![log(0, false, "POST", "https://evil.example/a b", "")],
    );
    let (allowed_id, denied_id) = (allowed.batch_id.clone(), denied.batch_id.clone());
    agent.report(vec![allowed, denied]).await.unwrap();
    let lines = server.lines.wait_for(2).await;
    let id = ws.workspace_id;
    assert_eq!(
        after_stamp(&lines[0]),
        format!(
            " [info]  coderd.agentrpc: boundary_request  owner=alice  workspace_name=some-task  agent_name=main  decision=allow  session_id={SESSION}  sequence_number=12  workspace_id={id}  http_method=GET  http_url=https://dev.coder.com/  event_time=2025-12-08T20:58:46.093456789Z  matched_rule=domain=dev.coder.com  request_id={allowed_id}\n"
        )
    );
    assert_eq!(
        after_stamp(&lines[1]),
        format!(
            " [info]  coderd.agentrpc: boundary_request  owner=alice  workspace_name=some-task  agent_name=main  decision=deny  workspace_id={id}  http_method=POST  http_url=\"https://evil.example/a b\"  event_time=2025-12-08T20:58:46.093456789Z  request_id={denied_id}\n"
        )
    );
    // Stamped when written, not with the event time.
    let written = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S%.3f", &lines[0][..23])
        .unwrap()
        .in_tz("UTC")
        .unwrap()
        .timestamp();
    assert!(written > jiff::Timestamp::now() - jiff::SignedDuration::from_secs(300));
    server.stop().await.unwrap();
}
