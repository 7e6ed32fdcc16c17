//! [`Auditor`], the async handle a sandbox records its decisions with.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::batch::Batcher;
use crate::config::{Config, Overflow};
use crate::error::{CloseError, ConfigError, RecordError};
use crate::record::{Encoded, Queued, Record};
use crate::sequence::{Refused, Sequencer};
use crate::shared::{DropReason, Shared};
use crate::summary::Summary;
use crate::worker::{Channels, Control, Worker};

/// How far [`Auditor::record_without_waiting`] got.
pub(crate) enum Attempt {
    Done(Result<i32, RecordError>),
    /// Block mode and the queue is full: wait with [`Auditor::wait_and_send`].
    MustWait(Encoded, Option<Duration>),
}

/// Records audit decisions and sends them to the agent in the background.
///
/// Cheap to clone; every clone feeds the same session. Recording never waits
/// for the network: records go into a bounded queue that one background task
/// drains (see [`Config`] for what happens when it is full).
///
/// Call [`Auditor::close`] before exiting to deliver what is still queued
/// and get a [`Summary`]. Dropping the last clone starts the same drain in
/// the background, which completes only while the runtime keeps running.
#[derive(Clone, Debug)]
pub struct Auditor {
    queue: mpsc::Sender<Queued>,
    control: mpsc::UnboundedSender<Control>,
    summary: watch::Receiver<Option<Summary>>,
    shared: Arc<Shared>,
    overflow: Overflow,
    close_timeout: Duration,
}

impl Auditor {
    /// Starts an auditor on the current tokio runtime. It connects in the
    /// background, so a missing agent socket is not an error here: records
    /// wait (up to the buffer size) while it keeps redialing.
    pub fn start(config: Config) -> Result<Auditor, ConfigError> {
        let runtime = Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        Auditor::start_on(config, &runtime, Sequencer::new())
    }

    pub(crate) fn start_on(
        config: Config,
        runtime: &Handle,
        sequencer: Sequencer,
    ) -> Result<Auditor, ConfigError> {
        config.validate()?;
        let session_id = Uuid::new_v4();
        let digest = config.policy.as_ref().map_or("", |p| p.digest.as_str());
        let batcher = Batcher::new(
            session_id,
            &config.confined_process_name,
            digest,
            config.batch_max_records,
        );
        let shared = Arc::new(Shared::new(session_id, sequencer, batcher.max_record_len()));
        let (queue_tx, queue_rx) = mpsc::channel(config.queue_capacity);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (summary_tx, summary_rx) = watch::channel(None);
        let auditor = Auditor {
            queue: queue_tx,
            control: control_tx,
            summary: summary_rx,
            shared: shared.clone(),
            overflow: config.overflow,
            close_timeout: config.close_timeout,
        };
        let channels = Channels {
            queue: queue_rx,
            control: control_rx,
            summary: summary_tx,
        };
        runtime.spawn(Worker::new(config, shared, batcher, channels).run());
        Ok(auditor)
    }

    /// The session id (UUIDv4) every record of this auditor carries.
    pub fn session_id(&self) -> Uuid {
        self.shared.session_id
    }

    /// Sequence numbers assigned so far (dropped records included).
    pub fn assigned(&self) -> u64 {
        self.shared.sequencer.assigned()
    }

    /// Records written to the agent's socket at least once so far: the live
    /// size of [`Summary::sent`]. In plain mode with one producer, records
    /// are written in sequence order, so this is also the first sequence
    /// number not yet written (a test that kills the agent learns from it
    /// which records a dead connection may have taken with it).
    pub fn sent(&self) -> u64 {
        self.shared.sent()
    }

    /// Takes a record without ever waiting, whatever the overflow policy:
    /// when the queue is full the record is numbered, dropped and counted.
    /// Returns the record's sequence number.
    pub fn try_record(&self, record: Record) -> Result<i32, RecordError> {
        let encoded = self.check(record)?;
        match self.queue.try_reserve() {
            Ok(permit) => {
                let seq = self.assign()?;
                permit.send(encoded.with_sequence(seq));
                Ok(seq)
            }
            Err(TrySendError::Full(())) => {
                let seq = self.assign()?;
                self.shared.count_drop(DropReason::QueueFull);
                Err(RecordError::QueueFull {
                    sequence_number: seq,
                })
            }
            Err(TrySendError::Closed(())) => Err(RecordError::Closed),
        }
    }

    /// Takes a record following the configured [`Overflow`] policy: in drop
    /// mode this is [`Auditor::try_record`]; in block mode it waits for room
    /// (at most the configured timeout, then drops and counts).
    ///
    /// Cancelling the returned future before it completes leaves no trace:
    /// the record is numbered only once it is queued or dropped.
    pub async fn record(&self, record: Record) -> Result<i32, RecordError> {
        match self.record_without_waiting(record) {
            Attempt::Done(result) => result,
            Attempt::MustWait(encoded, timeout) => self.wait_and_send(encoded, timeout).await,
        }
    }

    /// The part of [`Auditor::record`] that never waits.
    pub(crate) fn record_without_waiting(&self, record: Record) -> Attempt {
        let Overflow::Block { timeout } = self.overflow else {
            return Attempt::Done(self.try_record(record));
        };
        let encoded = match self.check(record) {
            Ok(encoded) => encoded,
            Err(error) => return Attempt::Done(Err(error)),
        };
        match self.queue.try_reserve() {
            Ok(permit) => {
                let assigned = self.assign();
                if let Ok(seq) = assigned {
                    permit.send(encoded.with_sequence(seq));
                }
                Attempt::Done(assigned)
            }
            Err(TrySendError::Closed(())) => Attempt::Done(Err(RecordError::Closed)),
            Err(TrySendError::Full(())) => Attempt::MustWait(encoded, timeout),
        }
    }

    /// Block mode with a full queue: waits for room, at most `timeout`.
    pub(crate) async fn wait_and_send(
        &self,
        encoded: Encoded,
        timeout: Option<Duration>,
    ) -> Result<i32, RecordError> {
        let reserve = self.queue.reserve();
        let reserved = match timeout {
            None => reserve.await,
            Some(limit) => match tokio::time::timeout(limit, reserve).await {
                Ok(reserved) => reserved,
                Err(_) => {
                    let seq = self.assign()?;
                    self.shared.count_drop(DropReason::QueueTimeout);
                    return Err(RecordError::QueueTimeout {
                        sequence_number: seq,
                        waited: limit,
                    });
                }
            },
        };
        let permit = reserved.map_err(|_| RecordError::Closed)?;
        let seq = self.assign()?;
        permit.send(encoded.with_sequence(seq));
        Ok(seq)
    }

    /// Stops taking records, delivers what is left within the configured
    /// `close_timeout`, and returns the summary. Any clone may call it; all
    /// get the same summary.
    pub async fn close(self) -> Result<Summary, CloseError> {
        let timeout = self.close_timeout;
        self.close_within(timeout).await
    }

    /// [`Auditor::close`] with its own deadline. The first close decides the
    /// deadline; later calls wait for the same summary.
    pub async fn close_within(self, timeout: Duration) -> Result<Summary, CloseError> {
        // A send error means the task already finished; its summary is below.
        let _ = self.control.send(Control::Close { timeout });
        let mut summary = self.summary;
        let done = summary
            .wait_for(Option::is_some)
            .await
            .map_err(|_| CloseError::WorkerGone)?;
        done.as_ref().cloned().ok_or(CloseError::WorkerGone)
    }

    /// Validates and sizes a record on the caller's thread.
    fn check(&self, record: Record) -> Result<Encoded, RecordError> {
        let checked = Encoded::new(record).and_then(|encoded| {
            let size = encoded.worst_case_len();
            let max = self.shared.max_record_len;
            if size > max {
                Err(RecordError::TooLarge { size, max })
            } else {
                Ok(encoded)
            }
        });
        if checked.is_err() {
            self.shared.count_rejected();
        }
        checked
    }

    fn assign(&self) -> Result<i32, RecordError> {
        self.shared
            .sequencer
            .assign()
            .map_err(|refused| match refused {
                Refused::Closed => RecordError::Closed,
                Refused::Exhausted => RecordError::SequenceExhausted,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::SEQUENCE_LIMIT;

    #[tokio::test]
    async fn a_session_refuses_records_once_its_sequence_numbers_are_used_up() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(dir.path().join("none.sock"));
        let sequencer = Sequencer::starting_at(SEQUENCE_LIMIT - 2);
        let auditor = Auditor::start_on(config, &Handle::current(), sequencer).unwrap();
        let r = || Record::deny("GET", "https://a.io");
        assert_eq!(auditor.try_record(r()), Ok(i32::MAX - 1));
        assert_eq!(auditor.record(r()).await, Ok(i32::MAX));
        assert_eq!(auditor.try_record(r()), Err(RecordError::SequenceExhausted));
        let summary = auditor.close_within(Duration::ZERO).await.unwrap();
        assert_eq!(summary.final_sequence_number, i64::from(i32::MAX));
        assert_eq!(summary.assigned, SEQUENCE_LIMIT);
    }

    #[tokio::test]
    async fn records_after_close_are_refused_and_every_clone_gets_the_summary() {
        let dir = tempfile::tempdir().unwrap();
        let auditor = Auditor::start(Config::new(dir.path().join("none.sock"))).unwrap();
        let other = auditor.clone();
        let first = auditor.close_within(Duration::ZERO).await.unwrap();
        assert_eq!(
            other.try_record(Record::deny("GET", "https://a.io")),
            Err(RecordError::Closed)
        );
        let second = other.close().await.unwrap();
        assert_eq!(first, second);
    }
}
