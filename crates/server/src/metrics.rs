//! The control plane's Prometheus metrics (`/metrics`).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use warden_proto::domain::DropReason;

use crate::connections::ConnectionMetrics;
use crate::export::metrics::ExportMetrics;
use crate::plausible::PlausibilityMetrics;
use crate::retention::RetentionMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub method: &'static str,
    pub code: &'static str,
}

/// Label for agent drop reasons this build does not know, so an agent
/// cannot create label values at will.
pub const OTHER_REASON: &str = "other";

/// Maps an agent-sent reason to a bounded label value: every
/// [`DropReason`] under its own name, anything else as [`OTHER_REASON`].
pub fn agent_reason_label(reason: &str) -> &'static str {
    DropReason::parse(reason).map_or(OTHER_REASON, DropReason::as_str)
}

pub struct Metrics {
    registry: Registry,
    pub records_ingested: Family<DecisionLabel, Counter>,
    pub records_duplicate: Counter,
    pub records_conflict: Counter,
    /// Records stored with their URL cut to the bound (`--max-url-bytes`).
    pub urls_truncated: Counter,
    /// Policy texts refused because their SHA-256 is not their digest.
    pub policies_refused: Counter,
    pub records_rejected: Family<ReasonLabel, Counter>,
    pub batches_resent: Counter,
    /// Times the record chain did not check (the signer found links that
    /// do not extend the last checkpoint).
    pub chain_verify_failures: Counter,
    /// Session completeness verdicts signed.
    pub session_verdicts: Counter,
    /// Runs of the background chain self-check.
    pub chain_self_checks: Counter,
    /// Missing records no report explains, over live workspaces (from the
    /// last self-check).
    pub unexplained_loss: Gauge,
    pub client_dropped: Family<ReasonLabel, Counter>,
    pub agent_dropped_records: Family<ReasonLabel, Counter>,
    pub agent_dropped_frames: Family<ReasonLabel, Counter>,
    pub rpc_errors: Family<RpcLabels, Counter>,
    pub ingest_seconds: Histogram,
    pub batch_records: Histogram,
    pub lines_printed: Counter,
    pub line_write_errors: Counter,
    pub retention: Arc<RetentionMetrics>,
    pub connections: Arc<ConnectionMetrics>,
    pub plausibility: Arc<PlausibilityMetrics>,
    pub exports: Arc<ExportMetrics>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("warden");
        let m = Metrics {
            records_ingested: Family::default(),
            records_duplicate: Counter::default(),
            records_conflict: Counter::default(),
            urls_truncated: Counter::default(),
            policies_refused: Counter::default(),
            records_rejected: Family::default(),
            batches_resent: Counter::default(),
            chain_verify_failures: Counter::default(),
            session_verdicts: Counter::default(),
            chain_self_checks: Counter::default(),
            unexplained_loss: Gauge::default(),
            client_dropped: Family::default(),
            agent_dropped_records: Family::default(),
            agent_dropped_frames: Family::default(),
            rpc_errors: Family::default(),
            // 100 µs .. ~13 s
            ingest_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            // 1 .. 1024 records
            batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            lines_printed: Counter::default(),
            line_write_errors: Counter::default(),
            retention: Arc::default(),
            connections: Arc::default(),
            plausibility: Arc::default(),
            exports: Arc::default(),
            registry: Registry::default(),
        };
        registry.register(
            "records_ingested",
            "Boundary records newly stored, by decision",
            m.records_ingested.clone(),
        );
        registry.register(
            "records_duplicate",
            "Records delivered again and not stored twice",
            m.records_duplicate.clone(),
        );
        registry.register(
            "records_conflict",
            "Records whose session key matched a stored record with other content (stored, flagged)",
            m.records_conflict.clone(),
        );
        registry.register(
            "records_url_truncated",
            "Records stored with their URL cut to the bound (--max-url-bytes), with its original length",
            m.urls_truncated.clone(),
        );
        registry.register(
            "policies_refused",
            "Policy texts refused because their SHA-256 is not the digest they came with",
            m.policies_refused.clone(),
        );
        registry.register(
            "records_rejected",
            "Records refused by validation, by reason",
            m.records_rejected.clone(),
        );
        registry.register(
            "batches_resent",
            "Batches delivered again after they were committed",
            m.batches_resent.clone(),
        );
        registry.register(
            "chain_verify_failures",
            "Times the record chain did not extend the last signed checkpoint",
            m.chain_verify_failures.clone(),
        );
        registry.register(
            "chain_self_checks",
            "Runs of the background check of the record chain's tail",
            m.chain_self_checks.clone(),
        );
        registry.register(
            "unexplained_loss_records",
            "Missing records no report explains, over live workspaces, as of the last self-check",
            m.unexplained_loss.clone(),
        );
        registry.register(
            "session_verdicts",
            "Session completeness verdicts signed",
            m.session_verdicts.clone(),
        );
        registry.register(
            "client_dropped_records",
            "Records sandbox clients reported dropping, by reason",
            m.client_dropped.clone(),
        );
        registry.register(
            "agent_dropped_records",
            "Records workspace agents reported dropping, by reason",
            m.agent_dropped_records.clone(),
        );
        registry.register(
            "agent_dropped_frames",
            "Frames or connections workspace agents reported dropping, by reason",
            m.agent_dropped_frames.clone(),
        );
        registry.register(
            "agent_rpc_errors",
            "Agent API calls that failed, by method and gRPC code",
            m.rpc_errors.clone(),
        );
        registry.register(
            "ingest_duration_seconds",
            "Time to commit one ReportBoundaryLogs call",
            m.ingest_seconds.clone(),
        );
        registry.register(
            "ingest_batch_records",
            "Records per delivered batch",
            m.batch_records.clone(),
        );
        registry.register(
            "boundary_lines_printed",
            "Boundary log lines written to stderr",
            m.lines_printed.clone(),
        );
        registry.register(
            "boundary_line_write_errors",
            "Failed writes of boundary log lines (they are printed at the next start)",
            m.line_write_errors.clone(),
        );
        m.retention.register(&mut registry);
        // Every agent drop reason from the start, at zero.
        let reasons = DropReason::ALL.map(DropReason::as_str);
        for reason in reasons.into_iter().chain([OTHER_REASON]) {
            let _ = m
                .agent_dropped_records
                .get_or_create(&ReasonLabel { reason });
            let _ = m
                .agent_dropped_frames
                .get_or_create(&ReasonLabel { reason });
        }
        // Both decisions and both client drop reasons from the start, at
        // zero, so alerts on rate() work from the first scrape.
        for decision in ["allow", "deny"] {
            let _ = m
                .records_ingested
                .get_or_create(&DecisionLabel { decision });
        }
        for reason in ["channel_full", "batch_full"] {
            let _ = m.client_dropped.get_or_create(&ReasonLabel { reason });
        }
        m.connections.register(&mut registry);
        m.plausibility.register(&mut registry);
        m.exports.register(&mut registry);
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_reasons_are_bounded() {
        assert_eq!(agent_reason_label("spool_full"), "spool_full");
        assert_eq!(agent_reason_label("anything\nelse"), "other");
        // What the server used to fold into `other`.
        for reason in [
            "rejected_by_control_plane",
            "spool_error",
            "connection_limit",
            "read_error",
            "unexpected_frame",
            "idle_timeout",
        ] {
            assert_eq!(agent_reason_label(reason), reason);
        }
    }

    #[test]
    fn every_agent_drop_reason_is_exported_at_zero() {
        let text = Metrics::new().encode();
        for reason in DropReason::ALL.iter().map(|r| r.as_str()).chain(["other"]) {
            for family in ["records", "frames"] {
                let line = format!("warden_agent_dropped_{family}_total{{reason=\"{reason}\"}} 0");
                assert!(text.lines().any(|l| l == line), "missing {line:?}");
            }
        }
    }

    #[test]
    fn decisions_client_reasons_and_export_sinks_are_exported_at_zero() {
        let text = Metrics::new().encode();
        for line in [
            "warden_records_ingested_total{decision=\"allow\"} 0",
            "warden_records_ingested_total{decision=\"deny\"} 0",
            "warden_client_dropped_records_total{reason=\"channel_full\"} 0",
            "warden_client_dropped_records_total{reason=\"batch_full\"} 0",
            "warden_export_records_total{sink=\"otlp\"} 0",
            "warden_export_failures_total{sink=\"ocsf\"} 0",
            "warden_export_lag_records{sink=\"syslog\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in {text}"
            );
        }
    }

    #[test]
    fn counters_show_up_in_the_exposition() {
        let m = Metrics::new();
        m.records_ingested
            .get_or_create(&DecisionLabel { decision: "deny" })
            .inc_by(3);
        m.rpc_errors
            .get_or_create(&RpcLabels {
                method: "ReportBoundaryLogs",
                code: "unauthenticated",
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains("warden_records_ingested_total{decision=\"deny\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("warden_agent_rpc_errors_total{method=\"ReportBoundaryLogs\",code=\"unauthenticated\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("warden_ingest_duration_seconds_bucket"),
            "{text}"
        );
    }
}
