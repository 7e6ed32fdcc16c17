//! How many agent calls carried the run, as the server counted them on its
//! `/metrics` (`warden_ingest_duration_seconds_count`: one per committed
//! `ReportBoundaryLogs`). At a low steady rate the server's and the agent's
//! CPU follow calls rather than records, so the records a call carries
//! explain their figures per record, and the CPU each spends per call says
//! what a call costs.

use std::time::Duration;

use serde::Serialize;

/// The histogram count the server keeps of its ingest calls.
const INGEST_CALLS: &str = "warden_ingest_duration_seconds_count";

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Calls {
    pub calls: u64,
    pub per_second: f64,
    pub records_per_call: f64,
    /// The server's CPU over the run divided by the calls.
    pub server_cpu_ms_per_call: f64,
    /// The agent's CPU over the run divided by the calls.
    pub agent_cpu_ms_per_call: f64,
}

impl Calls {
    /// `calls` that carried `records` in `seconds`, while the server and the
    /// agent spent `server_cpu` and `agent_cpu`.
    pub fn new(
        calls: u64,
        records: u64,
        seconds: f64,
        server_cpu: Duration,
        agent_cpu: Duration,
    ) -> Calls {
        let per_call = |cpu: Duration| cpu.as_secs_f64() * 1e3 / calls.max(1) as f64;
        Calls {
            calls,
            per_second: calls as f64 / seconds.max(f64::MIN_POSITIVE),
            records_per_call: records as f64 / calls.max(1) as f64,
            server_cpu_ms_per_call: per_call(server_cpu),
            agent_cpu_ms_per_call: per_call(agent_cpu),
        }
    }
}

/// The ingest call count in a Prometheus text (summed over label sets, if
/// any); `None` when the metric is not there.
pub fn ingest_calls(metrics: &str) -> Option<u64> {
    let mut total = None;
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(INGEST_CALLS) else {
            continue;
        };
        // `name value` or `name{labels} value`; not a longer name.
        if !rest.starts_with([' ', '{']) {
            continue;
        }
        let value: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        *total.get_or_insert(0) += value as u64;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_read_and_summed_over_labels() {
        let text = "# HELP warden_ingest_duration_seconds Time to commit one call\n\
                    warden_ingest_duration_seconds_sum 1.5\n\
                    warden_ingest_duration_seconds_count 1031\n\
                    warden_ingest_duration_seconds_count_other 7\n";
        assert_eq!(ingest_calls(text), Some(1031));
        let labelled = "warden_ingest_duration_seconds_count{store=\"a\"} 3\n\
                        warden_ingest_duration_seconds_count{store=\"b\"} 4\n";
        assert_eq!(ingest_calls(labelled), Some(7));
        assert_eq!(ingest_calls("warden_records_ingested_total 5\n"), None);
    }

    #[test]
    fn records_per_call_calls_per_second_and_cpu_per_call() {
        let calls = Calls::new(
            100,
            10_000,
            2.0,
            Duration::from_millis(150),
            Duration::from_millis(90),
        );
        assert_eq!(calls.per_second, 50.0);
        assert_eq!(calls.records_per_call, 100.0);
        assert!((calls.server_cpu_ms_per_call - 1.5).abs() < 1e-9);
        assert!((calls.agent_cpu_ms_per_call - 0.9).abs() < 1e-9);
    }
}
