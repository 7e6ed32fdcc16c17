//! The exports' figures on `/metrics`, one label value per sink kind, every
//! one present at zero from the start so alerts on `rate()` work at once.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::SinkKind;

/// The `sink` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    /// `otlp`, `ocsf` or `syslog`.
    pub sink: &'static str,
}

/// What the exporters did.
#[derive(Debug, Default)]
pub struct ExportMetrics {
    /// Records delivered.
    pub records: Family<SinkLabel, Counter>,
    /// Failed deliveries (each attempt) and failed store calls.
    pub failures: Family<SinkLabel, Counter>,
    /// Records committed but not delivered yet (on the replica that holds
    /// the sink's lease).
    pub lag_records: Family<SinkLabel, Gauge>,
    /// How long ago the oldest record not delivered yet was committed.
    pub lag_seconds: Family<SinkLabel, Gauge<f64, AtomicU64>>,
    /// 1 while this replica holds the sink's lease.
    pub lease_held: Family<SinkLabel, Gauge>,
    /// The highest record id delivered.
    pub cursor: Family<SinkLabel, Gauge>,
}

impl ExportMetrics {
    /// Registers the families, each sink kind at zero.
    pub fn register(&self, registry: &mut Registry) {
        for kind in SinkKind::ALL {
            let label = kind.label();
            let _ = self.records.get_or_create(&label);
            let _ = self.failures.get_or_create(&label);
            let _ = self.lag_records.get_or_create(&label);
            let _ = self.lag_seconds.get_or_create(&label);
            let _ = self.lease_held.get_or_create(&label);
            let _ = self.cursor.get_or_create(&label);
        }
        registry.register(
            "export_records",
            "Records delivered to an export sink, by sink",
            self.records.clone(),
        );
        registry.register(
            "export_failures",
            "Failed deliveries to an export sink (each attempt) and failed store calls of its exporter, by sink",
            self.failures.clone(),
        );
        registry.register(
            "export_lag_records",
            "Records committed and not yet delivered to the sink (on the replica holding its lease)",
            self.lag_records.clone(),
        );
        registry.register(
            "export_lag_seconds",
            "Age of the oldest record not yet delivered to the sink (on the replica holding its lease)",
            self.lag_seconds.clone(),
        );
        registry.register(
            "export_lease_held",
            "1 while this replica holds the sink's export lease",
            self.lease_held.clone(),
        );
        registry.register(
            "export_cursor",
            "The highest record id delivered to the sink",
            self.cursor.clone(),
        );
    }
}
