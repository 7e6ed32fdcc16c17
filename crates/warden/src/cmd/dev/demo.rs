//! The demo producer of `warden dev`: what a sandboxed coding agent's
//! boundary would record, sent through the client library like any sandbox
//! tool would (`warden_client::Auditor`, acknowledged mode).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use warden_client::{Auditor, Config, Overflow, Record, Summary};

/// The `confined_process_name` of the demo's records.
pub const PROCESS_NAME: &str = "warden-dev-demo";

/// How long closing may take to deliver the last records.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// One request a sandbox made: method, URL, and the allow rule that matched
/// (`None`: denied).
type Request = (&'static str, &'static str, Option<&'static str>);

/// A session's worth of traffic: fetching code and packages (allowed),
/// calling the model API (allowed), and what a policy is there to stop
/// (denied): uploads to paste sites, scripts from unknown hosts, the cloud
/// metadata endpoint, telemetry, a raw IP.
const TRAFFIC: &[Request] = &[
    (
        "GET",
        "https://github.com/coder/coder.git/info/refs?service=git-upload-pack",
        Some("domain=github.com"),
    ),
    (
        "POST",
        "https://github.com/coder/coder.git/git-upload-pack",
        Some("domain=github.com"),
    ),
    (
        "GET",
        "https://registry.npmjs.org/react",
        Some("domain=registry.npmjs.org"),
    ),
    (
        "GET",
        "https://registry.npmjs.org/typescript/-/typescript-5.6.3.tgz",
        Some("domain=registry.npmjs.org"),
    ),
    ("POST", "https://pastebin.com/api/api_post.php", None),
    (
        "GET",
        "https://pypi.org/simple/requests/",
        Some("domain=pypi.org"),
    ),
    (
        "GET",
        "https://files.pythonhosted.org/packages/requests-2.32.3-py3-none-any.whl",
        Some("domain=files.pythonhosted.org"),
    ),
    ("GET", "https://evil.example/install.sh", None),
    (
        "GET",
        "https://index.crates.io/config.json",
        Some("domain=index.crates.io"),
    ),
    (
        "GET",
        "https://static.crates.io/crates/serde/serde-1.0.215.crate",
        Some("domain=static.crates.io"),
    ),
    (
        "GET",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        None,
    ),
    (
        "POST",
        "https://api.anthropic.com/v1/messages",
        Some("domain=api.anthropic.com"),
    ),
    (
        "GET",
        "https://proxy.golang.org/github.com/spf13/cobra/@v/list",
        Some("domain=proxy.golang.org"),
    ),
    (
        "PUT",
        "https://storage.googleapis.com/unknown-bucket/workspace-dump.tar.gz",
        None,
    ),
    (
        "GET",
        "https://docs.rs/tokio/latest/tokio/",
        Some("domain=docs.rs"),
    ),
    ("POST", "https://telemetry.example.net/v1/events", None),
    ("CONNECT", "https://203.0.113.7:4444", None),
];

/// The `i`th demo record: the traffic in a shuffled but repeatable order (a
/// stride coprime with its length visits every request once per round).
pub fn record(i: u64) -> Record {
    let len = TRAFFIC.len() as u64;
    let (method, url, rule) = TRAFFIC[((i * 7 + i / len) % len) as usize];
    match rule {
        Some(rule) => Record::allow(method, url, rule),
        None => Record::deny(method, url),
    }
}

/// Sends `records` demo records at `rate` per second to the agent at
/// `socket`, stopping early when `stop` fires, then drains and returns the
/// client's summary.
pub async fn run(
    socket: &Path,
    records: u64,
    rate: f64,
    stop: CancellationToken,
) -> anyhow::Result<Summary> {
    let mut config = Config::new(socket);
    config.confined_process_name = PROCESS_NAME.into();
    // Small batches soon: the lines should appear as the records are made.
    config.batch_interval = Duration::from_millis(100);
    config.overflow = Overflow::Block { timeout: None };
    config.close_timeout = CLOSE_TIMEOUT;
    let auditor = Auditor::start(config).context("starting the demo client")?;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    for i in 0..records {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        // Block mode without a limit never drops; an error means closed.
        if let Err(error) = auditor.record(record(i)).await {
            tracing::warn!("demo record {i}: {error}");
            break;
        }
    }
    auditor.close().await.context("closing the demo client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_comes_once_per_round_and_some_are_denied() {
        let len = TRAFFIC.len() as u64;
        for round in 0..3 {
            let mut urls: Vec<String> = (round * len..(round + 1) * len)
                .map(|i| record(i).url)
                .collect();
            urls.sort();
            urls.dedup();
            assert_eq!(urls.len() as u64, len, "round {round}");
        }
        let denied = (0..len)
            .filter(|&i| !record(i).decision.is_allowed())
            .count();
        assert!(denied > 0 && denied < TRAFFIC.len() / 2, "{denied} denied");
    }
}
