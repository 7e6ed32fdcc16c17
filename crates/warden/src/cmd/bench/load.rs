//! The load: N `warden_client` auditors (one connection each) in this
//! process, writing numbered records of a chosen size as fast as the
//! pipeline takes them (block mode: a full queue waits, nothing is dropped)
//! or paced to a total rate.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use tokio::time::MissedTickBehavior;
use warden_client::{AckMode, AckPolicy, Auditor, Config, Overflow, Record};
use warden_proto::codec::{Frame, Tag, payload_len};
use warden_proto::wire::{BoundaryLog, ReportBoundaryLogsRequest, Timestamp, boundary_log};

/// The fixed parts of every record's URL; the rest is padding and the
/// record's number.
const URL_PREFIX: &str = "https://bench.example/";
const METHOD: &str = "GET";
const RULE: &str = "domain=bench.example";
/// Digits of the number at the end of every URL (a fixed width keeps every
/// record the same size).
const NUMBER_WIDTH: usize = 9;

/// What to send.
#[derive(Clone, Debug)]
pub struct Load {
    pub socket: PathBuf,
    pub clients: usize,
    /// Records in all.
    pub records: u64,
    /// Characters of padding in each URL (see [`padding_for`]).
    pub url_padding: usize,
    pub batch_size: usize,
    pub batch_interval: Duration,
    /// Records per second in all; `None`: as fast as it goes.
    pub rate: Option<f64>,
    pub acks: AckPolicy,
}

/// What the clients saw.
#[derive(Debug)]
pub struct Sent {
    /// When the first record was made.
    pub started: Instant,
    /// From `started` until every client had delivered (confirmed durable
    /// in the agent's spool, in acknowledged mode) and closed.
    pub accepted_after: Duration,
}

/// The encoded size of one record (its share of a frame) with `padding`.
pub fn record_size(padding: usize) -> usize {
    let log = wire_log(padding);
    let frame = |n: usize| {
        let request = ReportBoundaryLogsRequest {
            logs: vec![log.clone(); n],
            session_id: uuid_text(),
            confined_process_name: String::new(),
            ..Default::default()
        };
        // Two small frames cannot pass the limit.
        payload_len(Tag::Envelope, &Frame::Logs(request)).unwrap_or(0)
    };
    frame(2) - frame(1)
}

/// The URL padding that makes a record about `target` bytes (never below
/// the size of a record without padding).
pub fn padding_for(target: usize) -> usize {
    let mut padding = target.saturating_sub(record_size(0));
    // Length prefixes grow with the URL: settle in a few steps.
    for _ in 0..3 {
        let size = record_size(padding);
        if size == target {
            break;
        }
        padding = (padding + target).saturating_sub(size);
    }
    padding
}

fn uuid_text() -> String {
    "00000000-0000-4000-8000-000000000000".to_owned()
}

/// A record as the client encodes it, for sizing.
fn wire_log(padding: usize) -> BoundaryLog {
    BoundaryLog {
        allowed: true,
        time: Some(Timestamp {
            seconds: 1_765_227_526,
            nanos: 999_999_999,
        }),
        resource: Some(boundary_log::Resource::HttpRequest(
            boundary_log::HttpRequest {
                method: METHOD.into(),
                url: url(&"x".repeat(padding), 0),
                matched_rule: RULE.into(),
            },
        )),
        // A typical number: 3 bytes of varint.
        sequence_number: 100_000,
    }
}

/// The URL of record `n`: the prefix, the padding, `n` zero-padded.
///
/// By hand rather than `format!`: the bench makes one per record on the
/// clients' CPU budget, and `core::fmt`'s zero padding took most of the
/// time the load generator spent per record.
fn url(padding: &str, n: u64) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    let zeros = NUMBER_WIDTH.saturating_sub(digits.len());
    let mut url = String::with_capacity(URL_PREFIX.len() + padding.len() + zeros + digits.len());
    url.push_str(URL_PREFIX);
    url.push_str(padding);
    url.extend(std::iter::repeat_n('0', zeros));
    url.push_str(digits);
    url
}

impl Load {
    /// Runs every client to the end; fails unless every record was
    /// delivered.
    pub async fn run(&self) -> anyhow::Result<Sent> {
        let padding: String = "p".repeat(self.url_padding);
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(self.clients);
        for client in 0..self.clients {
            let share = self.records / self.clients as u64
                + u64::from((client as u64) < self.records % self.clients as u64);
            let rate = self.rate.map(|r| r / self.clients as f64);
            let auditor = Auditor::start(self.config(client)).context("starting a client")?;
            let padding = padding.clone();
            tasks.push(tokio::spawn(async move {
                produce(&auditor, client as u64, share, rate, &padding, started).await?;
                auditor.close().await.context("closing a client")
            }));
        }
        let mut summaries = Vec::with_capacity(tasks.len());
        for task in tasks {
            summaries.push(task.await.context("a client task failed")??);
        }
        let accepted_after = started.elapsed();
        for summary in &summaries {
            let acknowledged =
                self.acks == AckPolicy::Off || summary.acknowledgements == AckMode::Confirmed;
            if !summary.is_complete() || !acknowledged {
                return Err(anyhow!("a client did not deliver everything: {summary}"));
            }
        }
        Ok(Sent {
            started,
            accepted_after,
        })
    }

    fn config(&self, client: usize) -> Config {
        let mut config = Config::new(&self.socket);
        config.batch_max_records = self.batch_size;
        config.batch_interval = self.batch_interval;
        config.buffer_records = config.buffer_records.max(4 * self.batch_size);
        config.queue_capacity = config.queue_capacity.max(2 * self.batch_size);
        config.overflow = Overflow::Block { timeout: None };
        config.acknowledgements = self.acks;
        config.close_timeout = Duration::from_secs(300);
        config.confined_process_name = format!("bench-{client}");
        config
    }
}

/// Writes `count` records; paced to `rate` per second when given.
async fn produce(
    auditor: &Auditor,
    client: u64,
    count: u64,
    rate: Option<f64>,
    padding: &str,
    started: Instant,
) -> anyhow::Result<()> {
    // Numbers apart between clients, so that URLs differ.
    let first = client * 10_000_000;
    let record = |n: u64| Record::allow(METHOD, url(padding, first + n), RULE);
    match rate {
        None => {
            for n in 0..count {
                auditor.record(record(n)).await?;
            }
        }
        Some(rate) => {
            let mut ticks = tokio::time::interval(Duration::from_millis(1));
            ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let mut n = 0;
            while n < count {
                ticks.tick().await;
                let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(count);
                while n < due {
                    auditor.record(record(n)).await?;
                    n += 1;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_end_in_the_zero_padded_record_number() {
        assert_eq!(url("pp", 0), "https://bench.example/pp000000000");
        assert_eq!(url("", 42), "https://bench.example/000000042");
        assert_eq!(url("", 123_456_789), "https://bench.example/123456789");
        // Wider than the padding: all the digits, none cut.
        assert_eq!(
            url("p", 12_345_678_901),
            "https://bench.example/p12345678901"
        );
    }

    #[test]
    fn padding_reaches_the_target_size() {
        let base = record_size(0);
        assert!(base > 50 && base < 120, "{base}");
        for target in [200, 500, 1000, 4000] {
            assert_eq!(record_size(padding_for(target)), target, "{target}");
        }
        // Below the smallest record: no padding.
        assert_eq!(padding_for(10), 0);
    }
}
