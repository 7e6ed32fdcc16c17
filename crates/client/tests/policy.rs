//! A session with a policy: the digest on every logs frame, the digest and
//! text once in a status frame at the start, attributed to the session.

mod support;

use support::{FakeAgent, Script, all};
use warden_client::{Auditor, Config, Policy, Record};
use warden_proto::codec::Frame;

fn policy() -> Policy {
    Policy {
        digest: "5f2b".repeat(16),
        text: "deny domain=gist.github.com\nallow domain=github.com".into(),
    }
}

async fn policy_session(script: Script) {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), script);
    let mut config = Config::new(&agent.path);
    config.policy = Some(policy());
    config.batch_max_records = 4;
    let auditor = Auditor::start(config).unwrap();
    for i in 0..10 {
        let record = Record::allow(
            "GET",
            format!("https://github.com/{i}"),
            "domain=github.com",
        );
        auditor.try_record(record).unwrap();
    }
    let session = auditor.session_id().to_string();
    let summary = auditor.close().await.unwrap();
    assert!(summary.is_complete(), "{summary}");
    let received = agent.until_final_status().await;
    assert_eq!(received.stored(), all(10));

    // Every logs frame, the anchor included, names the session and the digest.
    let mut logs = 0;
    for request in received.logs() {
        assert_eq!(request.session_id, session);
        assert_eq!(request.policy_digest, policy().digest);
        logs += 1;
    }
    assert!(logs >= 3, "three batches of at most 4 records");

    // The policy status comes once, before any record, right after a frame
    // that names the session (so the agent attributes it to the session).
    let frames: Vec<_> = received
        .frames()
        .filter(|(_, f)| matches!(f.frame, Frame::Logs(_) | Frame::Status(_)))
        .map(|(_, f)| &f.frame)
        .collect();
    let with_policy: Vec<_> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| matches!(f, Frame::Status(s) if !s.policy_digest.is_empty()))
        .collect();
    assert_eq!(with_policy.len(), 1, "{frames:?}");
    let (at, Frame::Status(status)) = with_policy[0] else {
        unreachable!()
    };
    assert_eq!(status.policy_digest, policy().digest);
    assert_eq!(status.policy, policy().text);
    let Frame::Logs(anchor) = frames[at - 1] else {
        panic!("the policy status follows a logs frame: {frames:?}");
    };
    assert!(anchor.logs.is_empty(), "an anchor, before any record");
    assert_eq!(anchor.session_id, session);
    // Later status frames (the final one) carry no policy again.
    assert!(received.statuses().filter(|s| s.policy.is_empty()).count() >= 1);
}

#[tokio::test]
async fn a_policy_travels_once_per_session_and_its_digest_on_every_logs_frame() {
    policy_session(Script::warden()).await;
}

#[tokio::test]
async fn the_policy_travels_the_same_way_to_a_reference_agent() {
    policy_session(Script::reference()).await;
}

#[tokio::test]
async fn a_policy_digest_that_is_not_a_sha256_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("a.sock"));
    config.policy = Some(Policy {
        digest: "not-hex".into(),
        text: String::new(),
    });
    let error = Auditor::start(config).unwrap_err();
    assert!(
        error.to_string().contains("not a lower-case hex SHA-256"),
        "{error}"
    );
}
