//! Exports: every committed record delivered to the tools security teams
//! already run, each sink on its own (`--export-otlp`, `--export-ocsf`,
//! `--export-syslog`; several at once). See `docs/exports.md`.
//!
//! Each sink has a cursor in the store (the highest record id delivered;
//! ids grow in commit order, so "ids above the cursor" never misses a
//! record) and a lease, so that among replicas sharing a database one at a
//! time exports it and another takes over when its holder dies
//! ([`warden_store::exports`]). An exporter reads a page of records above
//! the cursor, delivers it, retrying with jittered exponential backoff for
//! as long as the receiver is down, and only then saves the cursor: a record
//! is delivered again only when the exporter stops between delivering and
//! saving (or stalled past its lease while another replica took over), and
//! every format carries Warden's record id so a receiver can drop repeats.
//!
//! - [`record`]: the one view of a record every format is made from;
//! - [`otlp`], [`ocsf`], [`syslog`]: the formats and transports;
//! - [`file`]: the OCSF sink's rotating file;
//! - [`metrics`]: records delivered, failures, lag, lease, on `/metrics`.

pub mod file;
pub mod metrics;
pub mod ocsf;
pub mod otlp;
pub mod record;
pub mod syslog;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use warden_store::{RecordId, RecordQuery, Store, StoreError, StoredRecord};

use self::file::RotatingFile;
use self::metrics::{ExportMetrics, SinkLabel};
use self::otlp::{OtlpClient, OtlpProtocol};
use self::record::ExportRecord;
use self::syslog::SyslogClient;

/// The kinds of sink (one of each at most; the kind names the sink's cursor
/// in the store and its `/metrics` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SinkKind {
    /// OTLP logs.
    Otlp,
    /// OCSF JSON lines in a file.
    Ocsf,
    /// RFC 5424 syslog.
    Syslog,
}

impl SinkKind {
    /// Every kind.
    pub const ALL: [SinkKind; 3] = [SinkKind::Otlp, SinkKind::Ocsf, SinkKind::Syslog];

    /// The sink's name: its cursor's key and its label.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Otlp => "otlp",
            SinkKind::Ocsf => "ocsf",
            SinkKind::Syslog => "syslog",
        }
    }

    fn label(self) -> SinkLabel {
        SinkLabel {
            sink: self.as_str(),
        }
    }
}

/// Where one sink delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkTarget {
    /// `--export-otlp URL --export-otlp-protocol P`.
    Otlp {
        /// The logs endpoint.
        url: String,
        /// gRPC or HTTP/protobuf.
        protocol: OtlpProtocol,
    },
    /// `--export-ocsf FILE`.
    Ocsf {
        /// The live file.
        path: PathBuf,
        /// Rotate when the file would grow past this.
        max_bytes: u64,
        /// Rotated files kept.
        keep: usize,
    },
    /// `--export-syslog tcp://HOST:PORT|tls://HOST:PORT`.
    Syslog {
        /// The collector.
        url: String,
        /// The CA that signed a TLS collector's certificate (system roots
        /// without).
        ca: Option<PathBuf>,
    },
}

impl SinkTarget {
    /// Its kind.
    pub fn kind(&self) -> SinkKind {
        match self {
            SinkTarget::Otlp { .. } => SinkKind::Otlp,
            SinkTarget::Ocsf { .. } => SinkKind::Ocsf,
            SinkTarget::Syslog { .. } => SinkKind::Syslog,
        }
    }
}

/// How exports run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSettings {
    /// The sinks, at most one of each kind.
    pub sinks: Vec<SinkTarget>,
    /// How long a replica's lease on a sink lasts unless renewed (it is
    /// renewed every third of that): how long a dead replica's sinks wait
    /// before another takes them over.
    pub lease: Duration,
    /// Records per delivery.
    pub batch: u32,
    /// How often an idle exporter looks for records other replicas
    /// committed, and a replica without the lease checks whether it is free.
    pub poll: Duration,
    /// The first pause after a failed delivery.
    pub backoff_min: Duration,
    /// The longest pause between attempts.
    pub backoff_max: Duration,
}

impl Default for ExportSettings {
    fn default() -> Self {
        ExportSettings {
            sinks: Vec::new(),
            lease: Duration::from_secs(15),
            batch: 500,
            poll: Duration::from_secs(1),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// Why a delivery failed (it is tried again).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Connecting, writing or reading failed.
    #[error("i/o")]
    Io(#[source] std::io::Error),
    /// The receiver did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The receiver answered with an error.
    #[error("{0}")]
    Refused(String),
    /// A blocking task failed.
    #[error("the writer task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// A sink ready to deliver.
#[derive(Debug)]
pub enum Sink {
    /// OTLP logs.
    Otlp(OtlpClient),
    /// The OCSF file (`None` only while a write runs).
    Ocsf(Option<RotatingFile>),
    /// Syslog.
    Syslog(SyslogClient),
}

impl Sink {
    /// Checks a target and makes its sink (nothing is connected or opened
    /// yet).
    pub fn new(target: &SinkTarget) -> Result<Sink, String> {
        Ok(match target {
            SinkTarget::Otlp { url, protocol } => Sink::Otlp(OtlpClient::new(url, *protocol)?),
            SinkTarget::Ocsf {
                path,
                max_bytes,
                keep,
            } => Sink::Ocsf(Some(RotatingFile::new(path.clone(), *max_bytes, *keep))),
            SinkTarget::Syslog { url, ca } => Sink::Syslog(SyslogClient::new(url, ca.as_deref())?),
        })
    }

    /// Delivers these records; an error means some may not have arrived.
    pub async fn send(&mut self, records: &[StoredRecord]) -> Result<(), SinkError> {
        let view: Vec<ExportRecord<'_>> = records.iter().map(ExportRecord::stored).collect();
        match self {
            Sink::Otlp(client) => client.send(otlp::request(&view)).await,
            Sink::Syslog(client) => client.send(&view).await,
            Sink::Ocsf(slot) => {
                let lines: Vec<String> = view.iter().map(ocsf::line).collect();
                let Some(mut file) = slot.take() else {
                    return Err(SinkError::Refused("the file is busy".into()));
                };
                let (file, written) = tokio::task::spawn_blocking(move || {
                    let written = file.append(&lines);
                    (file, written)
                })
                .await
                .map_err(SinkError::Task)?;
                *slot = Some(file);
                written.map_err(SinkError::Io)
            }
        }
    }
}

/// Makes the sinks of `settings`, refusing two of one kind.
pub fn sinks(settings: &ExportSettings) -> Result<Vec<(SinkKind, Sink)>, String> {
    let mut out: Vec<(SinkKind, Sink)> = Vec::new();
    for target in &settings.sinks {
        let kind = target.kind();
        if out.iter().any(|(k, _)| *k == kind) {
            return Err(format!(
                "only one {} export can be configured",
                kind.as_str()
            ));
        }
        out.push((kind, Sink::new(target)?));
    }
    Ok(out)
}

/// Starts one exporter task per sink; they stop (releasing their leases)
/// once `shutdown` is cancelled.
pub fn spawn(
    store: Arc<dyn Store>,
    sinks: Vec<(SinkKind, Sink)>,
    settings: &ExportSettings,
    metrics: Arc<ExportMetrics>,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    sinks
        .into_iter()
        .map(|(kind, sink)| {
            let exporter = Exporter {
                store: Arc::clone(&store),
                kind,
                sink,
                settings: settings.clone(),
                metrics: Arc::clone(&metrics),
                holder: Uuid::new_v4(),
                shutdown: shutdown.clone(),
            };
            tokio::spawn(exporter.run())
        })
        .collect()
}

/// One sink's exporter.
struct Exporter {
    store: Arc<dyn Store>,
    kind: SinkKind,
    sink: Sink,
    settings: ExportSettings,
    metrics: Arc<ExportMetrics>,
    /// This exporter's lease holder id (new at every start).
    holder: Uuid,
    shutdown: CancellationToken,
}

/// Whether the exporter holds its lease, and since when it last renewed it.
#[derive(Clone, Copy, Debug)]
enum Lease {
    None,
    Held { cursor: RecordId, renewed: Instant },
}

impl Exporter {
    fn name(&self) -> &'static str {
        self.kind.as_str()
    }

    async fn run(mut self) {
        let mut commits = self.store.local_commits();
        let mut lease = Lease::None;
        let mut backoff = self.backoff();
        while !self.shutdown.is_cancelled() {
            let cursor = match self.renew(lease).await {
                Ok(Some(held)) => {
                    if matches!(lease, Lease::None) {
                        tracing::info!(
                            sink = self.name(),
                            cursor = held,
                            "export lease taken; delivering records after id {held}"
                        );
                    }
                    if let Lease::Held { cursor, .. } = lease {
                        // A renewal returns the stored cursor, which is ours.
                        lease = Lease::Held {
                            cursor: cursor.max(held),
                            renewed: Instant::now(),
                        };
                        cursor.max(held)
                    } else {
                        lease = Lease::Held {
                            cursor: held,
                            renewed: Instant::now(),
                        };
                        held
                    }
                }
                Ok(None) => {
                    self.lost(&mut lease);
                    self.pause(self.settings.poll).await;
                    continue;
                }
                Err(e) => {
                    self.store_failed(&e);
                    let pause = backoff.next().unwrap_or(self.settings.backoff_max);
                    self.pause(pause).await;
                    continue;
                }
            };
            let query = RecordQuery {
                after_id: Some(cursor),
                limit: self.settings.batch,
                ..RecordQuery::default()
            };
            let records = match self.store.records(query).await {
                Ok(records) => records,
                Err(e) => {
                    self.store_failed(&e);
                    let pause = backoff.next().unwrap_or(self.settings.backoff_max);
                    self.pause(pause).await;
                    continue;
                }
            };
            self.note_lag(cursor, records.first()).await;
            let Some(last) = records.last().map(|r| r.id) else {
                // Idle: wake on this replica's commits, or poll for others'.
                tokio::select! {
                    _ = commits.changed() => {}
                    () = tokio::time::sleep(self.settings.poll) => {}
                    () = self.shutdown.cancelled() => {}
                }
                continue;
            };
            if !self.deliver(&records, &mut lease, &mut backoff).await {
                continue;
            }
            backoff = self.backoff();
            self.metrics
                .records
                .get_or_create(&self.kind.label())
                .inc_by(records.len() as u64);
            match self
                .store
                .save_export_cursor(self.name(), self.holder, last, self.settings.lease)
                .await
            {
                Ok(true) => {
                    lease = Lease::Held {
                        cursor: last,
                        renewed: Instant::now(),
                    };
                    self.metrics
                        .cursor
                        .get_or_create(&self.kind.label())
                        .set(last);
                }
                Ok(false) => self.lost(&mut lease),
                Err(e) => {
                    // Go on from the delivered records; the next save
                    // stores a cursor at least this high.
                    self.store_failed(&e);
                    if let Lease::Held { renewed, .. } = lease {
                        lease = Lease::Held {
                            cursor: last,
                            renewed,
                        };
                    }
                }
            }
        }
        if matches!(lease, Lease::Held { .. })
            && let Err(e) = self.store.release_export(self.name(), self.holder).await
        {
            tracing::warn!(sink = self.name(), error = %e.chain(), "releasing the export lease failed");
        }
        self.metrics
            .lease_held
            .get_or_create(&self.kind.label())
            .set(0);
    }

    /// Takes the lease, or renews it when a third of it has passed; the
    /// cursor while held.
    async fn renew(&self, lease: Lease) -> Result<Option<RecordId>, StoreError> {
        match lease {
            Lease::Held { cursor, renewed } if renewed.elapsed() < self.settings.lease / 3 => {
                Ok(Some(cursor))
            }
            _ => {
                let held = self
                    .store
                    .claim_export(self.name(), self.holder, self.settings.lease)
                    .await?;
                self.metrics
                    .lease_held
                    .get_or_create(&self.kind.label())
                    .set(i64::from(held.is_some()));
                Ok(held)
            }
        }
    }

    /// Delivers `records`, retrying until it works; `false` when shutdown
    /// came first or the lease was lost meanwhile (the records are then
    /// another replica's to deliver).
    async fn deliver(
        &mut self,
        records: &[StoredRecord],
        lease: &mut Lease,
        backoff: &mut backon::ExponentialBackoff,
    ) -> bool {
        let label = self.kind.label();
        loop {
            let error = match self.sink.send(records).await {
                Ok(()) => return true,
                Err(e) => e,
            };
            self.metrics.failures.get_or_create(&label).inc();
            let pause = backoff.next().unwrap_or(self.settings.backoff_max);
            tracing::warn!(
                sink = self.name(),
                error = %error_chain(&error),
                records = records.len(),
                "export delivery failed; trying again in {pause:.1?}"
            );
            if let Some(first) = records.first() {
                self.note_age(first);
            }
            self.pause(pause).await;
            if self.shutdown.is_cancelled() {
                return false;
            }
            match self.renew(*lease).await {
                Ok(Some(cursor)) => {
                    if let Lease::Held { renewed, .. } = lease
                        && renewed.elapsed() >= self.settings.lease / 3
                    {
                        *lease = Lease::Held {
                            cursor,
                            renewed: Instant::now(),
                        };
                    }
                }
                Ok(None) => {
                    self.lost(lease);
                    return false;
                }
                // The store is away too: keep trying the receiver; the
                // cursor save after it tells whether the lease held.
                Err(e) => self.store_failed(&e),
            }
        }
    }

    fn lost(&self, lease: &mut Lease) {
        if matches!(lease, Lease::Held { .. }) {
            tracing::warn!(
                sink = self.name(),
                "another replica holds the export lease now; this one stops delivering"
            );
        }
        *lease = Lease::None;
        self.metrics
            .lease_held
            .get_or_create(&self.kind.label())
            .set(0);
        self.metrics
            .lag_records
            .get_or_create(&self.kind.label())
            .set(0);
        self.metrics
            .lag_seconds
            .get_or_create(&self.kind.label())
            .set(0.0);
    }

    fn store_failed(&self, e: &StoreError) {
        self.metrics
            .failures
            .get_or_create(&self.kind.label())
            .inc();
        tracing::warn!(sink = self.name(), error = %e.chain(), "export: the store failed");
    }

    /// Lag: records committed after the cursor, and the age of the first.
    async fn note_lag(&self, cursor: RecordId, first: Option<&StoredRecord>) {
        let label = self.kind.label();
        if let Ok(Some(last)) = self.store.last_record_id().await {
            // Ids are handed out one after another in commit order.
            self.metrics
                .lag_records
                .get_or_create(&label)
                .set((last - cursor).max(0));
        }
        match first {
            Some(first) => self.note_age(first),
            None => {
                self.metrics.lag_records.get_or_create(&label).set(0);
                self.metrics.lag_seconds.get_or_create(&label).set(0.0);
            }
        }
    }

    fn note_age(&self, first: &StoredRecord) {
        let age = jiff::Timestamp::now()
            .duration_since(first.committed_at)
            .as_secs_f64()
            .max(0.0);
        self.metrics
            .lag_seconds
            .get_or_create(&self.kind.label())
            .set(age);
    }

    async fn pause(&self, pause: Duration) {
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = self.shutdown.cancelled() => {}
        }
    }

    fn backoff(&self) -> backon::ExponentialBackoff {
        backon::ExponentialBuilder::new()
            .with_min_delay(self.settings.backoff_min)
            .with_max_delay(self.settings.backoff_max)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// An error and its causes, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
