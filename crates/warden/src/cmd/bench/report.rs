//! The figures of one bench run: throughput, latency percentiles and each
//! process's CPU time and peak memory, as text for people and as JSON.

use std::fmt;

use serde::Serialize;

use super::calls::Calls;
use super::latency::Latency;
use super::peer::PeerReport;
use super::procs::Usage;
use super::stages::Stages;

/// One process's share.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ProcessFigures {
    pub cpu_seconds: f64,
    /// CPU time per record, microseconds.
    pub cpu_us_per_record: f64,
    pub peak_rss_mib: f64,
}

impl ProcessFigures {
    pub fn new(usage: Usage, records: u64) -> ProcessFigures {
        let cpu = usage.cpu.as_secs_f64();
        ProcessFigures {
            cpu_seconds: cpu,
            cpu_us_per_record: cpu * 1e6 / records.max(1) as f64,
            peak_rss_mib: usage.peak_rss as f64 / (1024.0 * 1024.0),
        }
    }
}

/// What a run measured, with the settings that produced it.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub clients: usize,
    pub records: u64,
    /// Encoded bytes per record.
    pub record_size: usize,
    pub batch_size: usize,
    pub batch_interval_ms: f64,
    /// Records/s asked for in all; `None`: as fast as possible.
    pub rate: Option<f64>,
    pub acknowledgements: bool,
    pub store: String,
    /// First record made to last boundary line printed.
    pub seconds: f64,
    pub records_per_second: f64,
    /// Records/s the clients had delivered to the agent (durable in its
    /// spool when acknowledged), until the last client closed.
    pub accepted_per_second: f64,
    /// Record event time to its boundary line.
    pub latency: Latency,
    /// The first stages of that time, from the store (`None` when it could
    /// not be read).
    pub stages: Option<Stages>,
    /// The agent's calls to the server (`None` when its metrics could not
    /// be read).
    pub calls: Option<Calls>,
    pub agent: ProcessFigures,
    pub server: ProcessFigures,
    /// This process: the clients (and the reading of the server's lines).
    pub clients_process: ProcessFigures,
    /// The same load through the peer (`--compare rsyslog`), run just before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerReport>,
    /// Warden's records/s over the peer's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_peer: Option<f64>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = match self.rate {
            Some(rate) => format!("paced at {rate:.0} records/s"),
            None => "as fast as it goes".to_owned(),
        };
        writeln!(
            f,
            "warden bench: {} clients, {} records of {} bytes, batches of up to {} or {:.0} ms, {rate}, acknowledgements {}, store {}",
            self.clients,
            self.records,
            self.record_size,
            self.batch_size,
            self.batch_interval_ms,
            if self.acknowledgements { "on" } else { "off" },
            self.store,
        )?;
        writeln!(
            f,
            "  end to end    {:>10.0} records/s  ({} records in {:.2} s, first record made to last boundary line)",
            self.records_per_second, self.records, self.seconds
        )?;
        writeln!(
            f,
            "  accepted      {:>10.0} records/s  (delivered to the agent{})",
            self.accepted_per_second,
            if self.acknowledgements {
                ", confirmed durable in its spool"
            } else {
                ""
            }
        )?;
        let l = &self.latency;
        writeln!(
            f,
            "  latency       p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms  (record time to its boundary line, {} records)",
            l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.samples
        )?;
        if let Some(s) = &self.stages {
            writeln!(
                f,
                "  stages        client {:.1}/{:.1} ms, agent {:.1}/{:.1} ms, event to server call {:.1}/{:.1} ms  (p50/p99; the rest is the server's)",
                s.client.p50_ms,
                s.client.p99_ms,
                s.agent.p50_ms,
                s.agent.p99_ms,
                s.to_server.p50_ms,
                s.to_server.p99_ms
            )?;
        }
        if let Some(c) = &self.calls {
            writeln!(
                f,
                "  calls         {} agent calls to the server ({:.0}/s, {:.1} records a call; \
                 CPU a call: server {:.2} ms, agent {:.2} ms)",
                c.calls,
                c.per_second,
                c.records_per_call,
                c.server_cpu_ms_per_call,
                c.agent_cpu_ms_per_call
            )?;
        }
        for (name, p) in [
            ("agent", &self.agent),
            ("server", &self.server),
            ("clients", &self.clients_process),
        ] {
            writeln!(
                f,
                "  {name:<8}      cpu {:>6.2} s ({:>5.2} µs/record, {:>4.2} cores), peak rss {:>6.1} MiB",
                p.cpu_seconds,
                p.cpu_us_per_record,
                p.cpu_seconds / self.seconds.max(f64::MIN_POSITIVE),
                p.peak_rss_mib
            )?;
        }
        if let (Some(peer), Some(ratio)) = (&self.peer, self.ratio_to_peer) {
            writeln!(f, "compared with {}:", peer.peer)?;
            writeln!(
                f,
                "  end to end    {:>10.0} records/s  ({} records in {:.2} s, first record sent to last line written by the receiver)",
                peer.records_per_second, peer.records, peer.seconds
            )?;
            for (name, p) in [
                ("sender", &peer.sender),
                ("receiver", &peer.receiver),
                ("clients", &peer.clients_process),
            ] {
                writeln!(
                    f,
                    "  {name:<8}      cpu {:>6.2} s ({:>5.2} µs/record), peak rss {:>6.1} MiB",
                    p.cpu_seconds, p.cpu_us_per_record, p.peak_rss_mib
                )?;
            }
            writeln!(
                f,
                "  warden / peer {ratio:>10.2}x  ({:.0} / {:.0} records/s)",
                self.records_per_second, peer.records_per_second
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn cpu_per_record_is_in_microseconds() {
        let usage = Usage {
            cpu: Duration::from_secs(2),
            peak_rss: 10 * 1024 * 1024,
        };
        let p = ProcessFigures::new(usage, 1_000_000);
        assert_eq!(p.cpu_us_per_record, 2.0);
        assert_eq!(p.peak_rss_mib, 10.0);
    }
}
