//! The agent's Prometheus metrics and the `/metrics` endpoint.
//!
//! Names keep the reference agent's established ones
//! (`agent_boundary_log_proxy_batches_forwarded_total`,
//! `agent_boundary_log_proxy_batches_dropped_total{reason}`,
//! `agent_boundary_log_proxy_logs_dropped_total{reason}`, with the client's
//! own drops as `boundary_channel_full` and `boundary_batch_full`) and add
//! the spool, connections, rejected frames and forwarding latency.
//!
//! Every label value a labelled counter can take is exported from the
//! start, at zero: the reasons are [`DropReason::ALL`] (the reference's
//! `buffer_full` and `forward_failed` included, which Warden never drops
//! for), so a dashboard or alert sees a series before its first increment.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use warden_proto::domain::DropReason;
use warden_spool::{Spool, SpoolStats};

/// Prefix shared by every metric, as the reference agent names them.
const PREFIX: &str = "agent_boundary_log_proxy";

/// The `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// A drop reason, or one of the client's own (`boundary_*`).
    pub reason: &'static str,
}

fn reason(reason: &'static str) -> Reason {
    Reason { reason }
}

/// The client's own drops, as `logs_dropped` names them.
const CLIENT_REASONS: [&str; 2] = ["boundary_channel_full", "boundary_batch_full"];

/// Reasons a frame (or connection) can be refused for by the socket reader.
const FRAME_REASONS: [DropReason; 9] = [
    DropReason::UnknownTag,
    DropReason::FrameTooLong,
    DropReason::TruncatedFrame,
    DropReason::ReadError,
    DropReason::MalformedFrame,
    DropReason::EmptyEnvelope,
    DropReason::UnexpectedFrame,
    DropReason::IdleTimeout,
    DropReason::SpoolError,
];

/// Every metric the agent keeps. Cheap to share (`Arc`).
pub struct Metrics {
    registry: Registry,
    /// Frames read from the socket.
    pub frames_received: Counter,
    /// Records made durable in the spool.
    pub records_accepted: Counter,
    /// Spooled batches the control plane acknowledged.
    pub batches_forwarded: Counter,
    /// Records the control plane acknowledged.
    pub records_forwarded: Counter,
    /// Frames, batches or connections lost or refused, by reason.
    pub batches_dropped: Family<Reason, Counter>,
    /// Records lost, by reason.
    pub logs_dropped: Family<Reason, Counter>,
    /// Frames the socket reader refused, by reason.
    pub frames_rejected: Family<Reason, Counter>,
    /// Clients connected now.
    pub connected_clients: Gauge,
    /// Failed calls (retried).
    pub forward_failures: Counter,
    /// From reading a frame to the control plane's acknowledgement.
    pub forward_latency: Histogram,
    /// Duration of successful calls.
    pub rpc_duration: Histogram,
    spool_bytes: Gauge,
    spool_entries: Gauge,
    spool_records: Gauge,
}

impl Metrics {
    /// The metrics, registered, every labelled series at zero.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let mut m = Metrics {
            registry: Registry::default(),
            frames_received: Counter::default(),
            records_accepted: Counter::default(),
            batches_forwarded: Counter::default(),
            records_forwarded: Counter::default(),
            batches_dropped: Family::default(),
            logs_dropped: Family::default(),
            frames_rejected: Family::default(),
            connected_clients: Gauge::default(),
            forward_failures: Counter::default(),
            forward_latency: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            rpc_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            spool_bytes: Gauge::default(),
            spool_entries: Gauge::default(),
            spool_records: Gauge::default(),
        };
        macro_rules! reg {
            ($name:literal, $help:literal, $metric:expr) => {
                registry.register(format!("{PREFIX}_{}", $name), $help, $metric.clone())
            };
        }
        reg!(
            "frames_received",
            "Frames read from the boundary log socket.",
            m.frames_received
        );
        reg!(
            "records_accepted",
            "Records made durable in the spool.",
            m.records_accepted
        );
        reg!(
            "batches_forwarded",
            "Spooled batches the control plane acknowledged.",
            m.batches_forwarded
        );
        reg!(
            "logs_forwarded",
            "Records the control plane acknowledged.",
            m.records_forwarded
        );
        reg!(
            "batches_dropped",
            "Frames, batches or connections lost or refused, by reason.",
            m.batches_dropped
        );
        reg!(
            "logs_dropped",
            "Records lost, by reason (boundary_* reasons are the clients' own drops).",
            m.logs_dropped
        );
        reg!(
            "frames_rejected",
            "Frames the agent refused to read, by reason.",
            m.frames_rejected
        );
        reg!(
            "connected_clients",
            "Clients connected to the boundary log socket.",
            m.connected_clients
        );
        reg!(
            "forward_failures",
            "ReportBoundaryLogs calls that failed and will be retried.",
            m.forward_failures
        );
        reg!(
            "forward_latency_seconds",
            "Time from reading a frame to the control plane's acknowledgement.",
            m.forward_latency
        );
        reg!(
            "forward_rpc_duration_seconds",
            "Duration of successful ReportBoundaryLogs calls.",
            m.rpc_duration
        );
        reg!("spool_bytes", "Bytes held in the spool.", m.spool_bytes);
        reg!(
            "spool_batches",
            "Batches held in the spool.",
            m.spool_entries
        );
        reg!(
            "spool_records",
            "Records held in the spool.",
            m.spool_records
        );
        m.registry = registry;
        for why in DropReason::ALL {
            let _ = m.batches_dropped.get_or_create(&reason(why.as_str()));
            let _ = m.logs_dropped.get_or_create(&reason(why.as_str()));
        }
        for why in CLIENT_REASONS {
            let _ = m.logs_dropped.get_or_create(&reason(why));
        }
        for why in FRAME_REASONS {
            let _ = m.frames_rejected.get_or_create(&reason(why.as_str()));
        }
        Arc::new(m)
    }

    /// Counts something the agent lost or refused.
    pub fn dropped(&self, why: DropReason, records: u64, frames: u64) {
        if frames > 0 {
            self.batches_dropped
                .get_or_create(&reason(why.as_str()))
                .inc_by(frames);
        }
        if records > 0 {
            self.logs_dropped
                .get_or_create(&reason(why.as_str()))
                .inc_by(records);
        }
    }

    /// Counts a frame refused by the socket reader.
    pub fn rejected(&self, why: DropReason) {
        self.frames_rejected
            .get_or_create(&reason(why.as_str()))
            .inc();
    }

    /// Counts drops a client reported about itself.
    pub fn client_dropped(&self, channel_full: i64, batch_full: i64) {
        for (why, n) in CLIENT_REASONS.into_iter().zip([channel_full, batch_full]) {
            if n > 0 {
                self.logs_dropped
                    .get_or_create(&reason(why))
                    .inc_by(n as u64);
            }
        }
    }

    /// The text exposition, with the spool gauges brought up to date.
    pub fn render(&self, spool: &SpoolStats) -> String {
        self.spool_bytes.set(spool.bytes as i64);
        self.spool_entries.set(spool.entries as i64);
        self.spool_records.set(spool.records as i64);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Binds the metrics listener (before anything else starts, so a bad
/// address is reported at once).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves `/metrics` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    spool: Spool,
    shutdown: CancellationToken,
) {
    use axum::http::header::CONTENT_TYPE;
    let app = axum::Router::new().route(
        "/metrics",
        // OpenMetrics when the scraper asks for it, Prometheus text
        // otherwise (`warden_proto::exposition`).
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let accept = headers
                .get(axum::http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = metrics.render(&spool.stats());
            async move {
                let (content_type, text) =
                    warden_proto::exposition::negotiate(accept.as_deref(), text);
                ([(CONTENT_TYPE, content_type)], text)
            }
        }),
    );
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "the metrics server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_exported_at_zero_from_the_start() {
        let text = Metrics::new().render(&SpoolStats::default());
        for why in DropReason::ALL {
            for family in ["batches_dropped", "logs_dropped"] {
                let line = format!(
                    "agent_boundary_log_proxy_{family}_total{{reason=\"{}\"}} 0",
                    why.as_str()
                );
                assert!(text.lines().any(|l| l == line), "missing {line:?}");
            }
        }
        for line in [
            "agent_boundary_log_proxy_logs_dropped_total{reason=\"buffer_full\"} 0",
            "agent_boundary_log_proxy_logs_dropped_total{reason=\"forward_failed\"} 0",
            "agent_boundary_log_proxy_logs_dropped_total{reason=\"boundary_channel_full\"} 0",
            "agent_boundary_log_proxy_frames_rejected_total{reason=\"idle_timeout\"} 0",
            "agent_boundary_log_proxy_frames_rejected_total{reason=\"unknown_tag\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?}");
        }
    }

    #[test]
    fn established_names_and_reasons_are_exposed() {
        let m = Metrics::new();
        m.batches_forwarded.inc();
        m.dropped(DropReason::MalformedFrame, 0, 1);
        m.dropped(DropReason::SpoolFull, 7, 2);
        m.client_dropped(5, 3);
        let text = m.render(&SpoolStats::default());
        for line in [
            "agent_boundary_log_proxy_batches_forwarded_total 1",
            "agent_boundary_log_proxy_batches_dropped_total{reason=\"malformed_frame\"} 1",
            "agent_boundary_log_proxy_batches_dropped_total{reason=\"spool_full\"} 2",
            "agent_boundary_log_proxy_logs_dropped_total{reason=\"spool_full\"} 7",
            "agent_boundary_log_proxy_logs_dropped_total{reason=\"boundary_channel_full\"} 5",
            "agent_boundary_log_proxy_logs_dropped_total{reason=\"boundary_batch_full\"} 3",
            "agent_boundary_log_proxy_spool_bytes 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
