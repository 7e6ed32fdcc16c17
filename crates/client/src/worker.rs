//! The background task: the one owner of the connection.
//!
//! It takes numbered records from the queue into a size-aware batch, cuts
//! the batch into an encoded frame (by count, by time, or when the next
//! record would not fit), and writes frames in order. In acknowledged mode it
//! keeps every frame until the agent's `FrameAck` for it arrives, and after a
//! reconnect writes everything unacknowledged again (after a new
//! `AckRequest`). In plain mode a frame is done once written; a frame whose
//! write failed is kept and written again on the next connection (the
//! reference client's rule; the control plane deduplicates by session and
//! sequence number).
//!
//! A session with a policy (`Config::policy`) starts with one status frame
//! carrying the policy's digest and text; the digest also rides on every
//! logs frame.
//!
//! Closing: stop numbering, wait until every numbered record was received or
//! counted as dropped, cut the last batch, queue the final status (drops not
//! yet reported and the last sequence number), then run until the outbox is
//! empty or the deadline passes.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use warden_proto::codec::{DecodedFrame, Frame};
use warden_proto::wire::{BoundaryStatus, FrameAck, frame_ack::Outcome};

use crate::batch::{self, ACK_VERSION, Batcher};
use crate::config::{AckPolicy, Config, Policy};
use crate::link::{self, Incoming, Link};
use crate::outbox::{Kind, Outbox, Pending};
use crate::record::Queued;
use crate::sequence::SequenceSet;
use crate::shared::Shared;
use crate::summary::{AckMode, AgentRefusals, FinalStatus, Summary};

/// Records taken from the queue per wake-up.
const RECV_CHUNK: usize = 512;
/// Longest wait for `connect` on the socket.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the clean shutdown of the socket may take at the end.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(200);

/// Requests from the handles.
#[derive(Debug)]
pub(crate) enum Control {
    Close { timeout: Duration },
}

/// Everything the task sets up before it runs.
pub(crate) struct Channels {
    pub(crate) queue: mpsc::Receiver<Queued>,
    pub(crate) control: mpsc::UnboundedReceiver<Control>,
    pub(crate) summary: watch::Sender<Option<Summary>>,
}

#[derive(Debug)]
struct Closing {
    deadline: Instant,
    /// Sequence numbers assigned in the session (exact: numbering stopped).
    assigned: u64,
    /// The last batch was cut and the final status queued.
    final_queued: bool,
}

/// What happened to the frames, for the summary.
#[derive(Debug, Default)]
struct Ledger {
    sent: SequenceSet,
    confirmed: SequenceSet,
    delivered: SequenceSet,
    refused: AgentRefusals,
    final_status: Option<FinalStatus>,
    connections: u64,
}

enum Event {
    Deadline,
    Control(Option<Control>),
    Read(Incoming),
    Wrote(io::Result<()>),
    Received(usize),
    BatchDue,
    Redial,
    DropCounted,
}

/// Why a connection ended, which decides what comes next.
enum Cause {
    /// EOF or an I/O error: before `AckAccepted` this is how a reference
    /// agent answers the request.
    Closed(String),
    /// The agent sent something this client does not expect.
    Protocol(String),
}

pub(crate) struct Worker {
    config: Config,
    shared: Arc<Shared>,
    queue: mpsc::Receiver<Queued>,
    queue_open: bool,
    control: mpsc::UnboundedReceiver<Control>,
    control_open: bool,
    summary: watch::Sender<Option<Summary>>,
    inbox: Vec<Queued>,
    batcher: Batcher,
    batch_due: Option<Instant>,
    outbox: Outbox,
    link: Option<Link>,
    redial_at: Option<Instant>,
    backoff: ExponentialBackoff,
    /// An outage was logged; the next successful dial says so.
    outage_logged: bool,
    ack: AckMode,
    /// The encoded `AckRequest`, while acknowledgements are wanted.
    ack_request: Option<Bytes>,
    ledger: Ledger,
    received: u64,
    /// Drops already reported to the agent in status frames.
    reported_drops: u64,
    closing: Option<Closing>,
}

impl Worker {
    pub(crate) fn new(
        config: Config,
        shared: Arc<Shared>,
        batcher: Batcher,
        channels: Channels,
    ) -> Worker {
        let ack_request = match config.acknowledgements {
            AckPolicy::Auto => match batch::ack_request_frame() {
                Ok(bytes) => Some(bytes),
                Err(error) => {
                    tracing::error!(%error, "cannot encode the acknowledgement request; continuing without");
                    None
                }
            },
            AckPolicy::Off => None,
        };
        let ack = if ack_request.is_some() {
            AckMode::Unknown
        } else {
            AckMode::Off
        };
        let mut outbox = Outbox::default();
        if let Some(policy) = &config.policy {
            outbox.push(policy_status(policy));
        }
        Worker {
            backoff: backoff(&config),
            config,
            shared,
            queue: channels.queue,
            queue_open: true,
            control: channels.control,
            control_open: true,
            summary: channels.summary,
            inbox: Vec::with_capacity(RECV_CHUNK),
            batcher,
            batch_due: None,
            outbox,
            link: None,
            redial_at: Some(Instant::now()),
            outage_logged: false,
            ack,
            ack_request,
            ledger: Ledger::default(),
            received: 0,
            reported_drops: 0,
            closing: None,
        }
    }

    pub(crate) async fn run(mut self) {
        let expired = loop {
            if self.finished() {
                break false;
            }
            self.prepare_write();
            match self.next_event().await {
                Event::Deadline => break true,
                event => self.handle(event).await,
            }
        };
        self.finish(expired).await;
    }

    async fn next_event(&mut self) -> Event {
        let held = self.outbox.records() + self.batcher.len();
        let room = self
            .config
            .buffer_records
            .saturating_sub(held)
            .min(RECV_CHUNK);
        let deadline = self.closing.as_ref().map(|c| c.deadline);
        let awaiting_drops = self.closing.as_ref().is_some_and(|c| !c.final_queued);
        let redial_at = if self.link.is_none() {
            self.redial_at
        } else {
            None
        };
        let (writer, reader) = match &mut self.link {
            Some(link) => (Some(&mut link.writer), Some(&mut link.reader)),
            None => (None, None),
        };
        tokio::select! {
            biased;
            () = sleep_until_some(deadline) => Event::Deadline,
            control = self.control.recv(), if self.control_open => Event::Control(control),
            incoming = link::read_next(reader) => Event::Read(incoming),
            wrote = link::write_some(writer) => Event::Wrote(wrote),
            n = self.queue.recv_many(&mut self.inbox, room), if self.queue_open && room > 0 => Event::Received(n),
            () = sleep_until_some(self.batch_due) => Event::BatchDue,
            () = sleep_until_some(redial_at) => Event::Redial,
            () = self.shared.drop_counted.notified(), if awaiting_drops => Event::DropCounted,
        }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Deadline | Event::DropCounted => {}
            Event::Control(Some(Control::Close { timeout })) => self.begin_close(timeout),
            Event::Control(None) => {
                // Every handle is gone: close as if `close()` had been called.
                self.control_open = false;
                self.begin_close(self.config.close_timeout);
            }
            Event::Read(Some(Ok(Ok(frame)))) => self.on_frame(frame),
            Event::Read(Some(Ok(Err(malformed)))) => {
                self.disconnect(Cause::Protocol(malformed.to_string()));
            }
            Event::Read(Some(Err(error))) => self.disconnect(Cause::Closed(error.to_string())),
            Event::Read(None) => {
                self.disconnect(Cause::Closed("the agent closed the connection".into()))
            }
            Event::Wrote(Ok(())) => {
                if self.link.as_ref().is_some_and(|l| l.writer.frame_done()) {
                    self.on_frame_written();
                }
            }
            Event::Wrote(Err(error)) => self.disconnect(Cause::Closed(error.to_string())),
            Event::Received(0) => {
                self.queue_open = false;
                self.begin_close(self.config.close_timeout);
            }
            Event::Received(_) => self.on_records(),
            Event::BatchDue => self.cut_batch(),
            Event::Redial => self.dial().await,
        }
    }

    /// Closing and done: everything numbered was batched, the final status
    /// queued, and the outbox is empty.
    fn finished(&mut self) -> bool {
        let Some(closing) = &self.closing else {
            return false;
        };
        if !closing.final_queued {
            let assigned = closing.assigned;
            if self.received + self.shared.drops().total() < assigned {
                return false;
            }
            self.cut_batch();
            self.queue_status(Some(assigned as i64 - 1));
            if let Some(closing) = &mut self.closing {
                closing.final_queued = true;
            }
        }
        self.outbox.is_empty() && self.batcher.is_empty()
    }

    fn begin_close(&mut self, timeout: Duration) {
        if self.closing.is_some() {
            return;
        }
        let assigned = self.shared.sequencer.close();
        self.closing = Some(Closing {
            deadline: after(timeout),
            assigned,
            final_queued: false,
        });
    }

    fn on_records(&mut self) {
        let mut inbox = std::mem::take(&mut self.inbox);
        self.received += inbox.len() as u64;
        for record in inbox.drain(..) {
            if !self.batcher.fits(record.len) {
                self.cut_batch();
            }
            if self.batcher.is_empty() {
                self.batch_due = Some(after(self.config.batch_interval));
            }
            self.batcher.push(record);
            if self.batcher.is_full() {
                self.cut_batch();
            }
        }
        self.inbox = inbox;
    }

    fn cut_batch(&mut self) {
        self.batch_due = None;
        match self.batcher.cut() {
            None => return,
            Some(Ok(frame)) => self.outbox.push(frame),
            // Cannot happen: the batch was sized to fit. Its records end up
            // counted as undelivered.
            Some(Err(error)) => {
                tracing::error!(%error, "cannot encode a batch; its records are lost")
            }
        }
        self.queue_status(None);
    }

    /// Queues a status frame with the drops not yet reported; always when
    /// `final_seq` is given (closing), otherwise only when there are any.
    fn queue_status(&mut self, final_seq: Option<i64>) {
        let total = self.shared.drops().total();
        let delta = total - self.reported_drops;
        if delta == 0 && final_seq.is_none() {
            return;
        }
        let status = BoundaryStatus {
            dropped_channel_full: delta as i64,
            dropped_batch_full: 0,
            final_sequence_number: final_seq,
            ..Default::default()
        };
        match batch::status_frame(status) {
            Ok(frame) => {
                self.outbox.push(frame);
                self.reported_drops = total;
            }
            Err(error) => tracing::error!(%error, "cannot encode a status frame"),
        }
    }

    /// Picks the next frame to write when the writer is idle, putting an
    /// anchor before a status frame on a connection that has not named the
    /// session yet.
    fn prepare_write(&mut self) {
        let Some(link) = &mut self.link else {
            return;
        };
        if link.writer.current.is_some() {
            return;
        }
        let Some(next) = self.outbox.next_unwritten() else {
            return;
        };
        if matches!(next.kind, Kind::Status { .. }) && !link.names_session {
            match self.batcher.anchor() {
                Ok(anchor) => self.outbox.insert_next(anchor),
                Err(error) => tracing::error!(%error, "cannot encode a session anchor frame"),
            }
        }
        link.writer.current = self.outbox.next_unwritten().map(|p| p.bytes.clone());
    }

    fn on_frame_written(&mut self) {
        let Some(link) = &mut self.link else {
            return;
        };
        link.writer.current = None;
        if link.ack_requested {
            if let Some(frame) = self.outbox.mark_in_flight() {
                link.names_session |= frame.names_session();
                if let Kind::Logs { seqs, .. } = &frame.kind {
                    self.ledger.sent.extend_from(seqs);
                    self.shared.set_sent(self.ledger.sent.len());
                }
            }
        } else if let Some(frame) = self.outbox.take_written() {
            link.names_session |= frame.names_session();
            match &frame.kind {
                Kind::Logs { seqs, .. } => {
                    self.ledger.sent.extend_from(seqs);
                    self.shared.set_sent(self.ledger.sent.len());
                    self.ledger.delivered.extend_from(seqs);
                }
                Kind::Status { is_final: true } => {
                    self.ledger.final_status = Some(FinalStatus::Written)
                }
                Kind::Status { .. } | Kind::Anchor => {}
            }
            // A write that went through is progress: the next outage starts
            // with short delays again.
            self.backoff = backoff(&self.config);
        }
    }

    fn on_frame(&mut self, frame: DecodedFrame) {
        let Some(link) = &mut self.link else {
            return;
        };
        match frame.frame {
            Frame::AckAccepted(accepted) if link.ack_requested && !link.accepted => {
                if accepted.version != ACK_VERSION {
                    let reason =
                        format!("agent chose acknowledgement version {}", accepted.version);
                    return self.disconnect(Cause::Protocol(reason));
                }
                link.accepted = true;
                self.ack = AckMode::Confirmed;
                tracing::debug!("the agent acknowledges frames");
            }
            Frame::FrameAck(ack) if link.accepted => {
                let expected = link.acked + 1;
                if ack.frame != expected {
                    let reason = format!(
                        "acknowledgement for frame {} when {expected} was next",
                        ack.frame
                    );
                    return self.disconnect(Cause::Protocol(reason));
                }
                let Some(pending) = self.outbox.take_acknowledged() else {
                    let reason =
                        format!("acknowledgement for frame {} that was not sent", ack.frame);
                    return self.disconnect(Cause::Protocol(reason));
                };
                link.acked = expected;
                self.backoff = backoff(&self.config);
                self.ledger.acknowledged(pending, &ack);
            }
            _ => {
                let reason = format!("unexpected tag {} frame from the agent", frame.tag);
                self.disconnect(Cause::Protocol(reason));
            }
        }
    }

    fn disconnect(&mut self, cause: Cause) {
        let Some(link) = self.link.take() else {
            return;
        };
        self.outbox.rewind();
        match cause {
            Cause::Closed(reason) if link.ack_requested && !link.accepted => {
                // A reference agent closes the connection on the unknown tag.
                tracing::warn!(
                    %reason,
                    "the agent does not support acknowledgements; continuing without them"
                );
                self.ack = AckMode::Unsupported;
                self.ack_request = None;
                self.redial_at = Some(Instant::now());
            }
            Cause::Closed(reason) => {
                tracing::warn!(%reason, "lost the connection to the agent; will redial");
                self.schedule_redial();
            }
            Cause::Protocol(reason) => {
                tracing::warn!(%reason, "protocol error from the agent; will redial");
                self.schedule_redial();
            }
        }
    }

    async fn dial(&mut self) {
        self.redial_at = None;
        let attempt = Link::dial(&self.config.socket_path, self.ack_request.as_ref());
        let result = match &self.closing {
            Some(closing) => timeout_at(closing.deadline.min(after(DIAL_TIMEOUT)), attempt).await,
            None => timeout(DIAL_TIMEOUT, attempt).await,
        };
        match result {
            Ok(Ok(link)) => {
                self.ledger.connections += 1;
                if self.outage_logged {
                    tracing::info!(path = %self.config.socket_path.display(), "connected to the agent");
                    self.outage_logged = false;
                }
                self.link = Some(link);
            }
            failed => {
                if !self.outage_logged {
                    let error = match failed {
                        Ok(Err(error)) => error.to_string(),
                        _ => "connect timed out".to_owned(),
                    };
                    tracing::warn!(
                        path = %self.config.socket_path.display(),
                        %error,
                        "agent socket unavailable; will keep redialing"
                    );
                    self.outage_logged = true;
                }
                self.schedule_redial();
            }
        }
    }

    fn schedule_redial(&mut self) {
        let delay = self.backoff.next().unwrap_or(self.config.reconnect_max);
        self.redial_at = Some(after(delay));
    }

    async fn finish(mut self, expired: bool) {
        // Producers still waiting for room get `Closed`; records already in
        // the queue are counted as undelivered.
        self.queue.close();
        let mut left = SequenceSet::new();
        while let Ok(record) = self.queue.try_recv() {
            left.insert(record.log.sequence_number);
        }
        left.extend_from(self.batcher.seqs());
        for frame in self.outbox.drain() {
            if let Kind::Logs { seqs, .. } = &frame.kind {
                left.extend_from(seqs);
            }
        }
        if let Some(link) = self.link.take() {
            // Errors here change nothing: every frame's fate is decided.
            let _ = timeout(SHUTDOWN_TIMEOUT, link.shutdown()).await;
        }
        let assigned = self
            .closing
            .as_ref()
            .map_or_else(|| self.shared.sequencer.assigned(), |c| c.assigned);
        let dropped = self.shared.drops();
        let accounted = dropped.total() + self.ledger.delivered.len() + self.ledger.refused.total();
        let summary = Summary {
            session_id: self.shared.session_id,
            acknowledgements: self.ack,
            assigned,
            final_sequence_number: assigned as i64 - 1,
            sent: self.ledger.sent,
            confirmed: self.ledger.confirmed,
            delivered: self.ledger.delivered,
            dropped,
            refused: self.ledger.refused,
            rejected: self.shared.rejected(),
            undelivered: assigned.saturating_sub(accounted),
            undelivered_sequences: left,
            final_status: self.ledger.final_status.unwrap_or(FinalStatus::NotSent),
            connections: self.ledger.connections,
            deadline_expired: expired,
        };
        self.summary.send_replace(Some(summary));
    }
}

impl Ledger {
    /// Accounts for a frame the agent acknowledged.
    fn acknowledged(&mut self, frame: Pending, ack: &FrameAck) {
        let outcome = Outcome::try_from(ack.outcome).unwrap_or(Outcome::Unspecified);
        match frame.kind {
            Kind::Logs { seqs, records } => {
                let records = records as u64;
                match outcome {
                    Outcome::Durable => {
                        if ack.rejected > 0 {
                            // Our records always carry a request; say so if
                            // an agent thinks otherwise.
                            tracing::warn!(
                                rejected = ack.rejected,
                                "the agent rejected records of a frame"
                            );
                        }
                        self.confirmed.extend_from(&seqs);
                        self.delivered.extend_from(&seqs);
                    }
                    Outcome::Dropped => self.refused.dropped += records,
                    Outcome::Malformed => self.refused.malformed += records,
                    Outcome::Unspecified => self.refused.rejected += records,
                }
            }
            Kind::Status { is_final: true } if outcome == Outcome::Durable => {
                self.final_status = Some(FinalStatus::Confirmed);
            }
            Kind::Status { .. } | Kind::Anchor => {}
        }
    }
}

/// The status frame that opens a session with a policy: its digest and
/// its text. A text too large for one frame is left out (the digest alone
/// still names the policy), with a warning.
fn policy_status(policy: &Policy) -> Pending {
    let status = |text: &str| BoundaryStatus {
        policy_digest: policy.digest.clone(),
        policy: text.to_owned(),
        ..Default::default()
    };
    match batch::status_frame(status(&policy.text)) {
        Ok(frame) => frame,
        Err(error) => {
            tracing::warn!(
                %error,
                bytes = policy.text.len(),
                "the policy text does not fit in a status frame; sending its digest only"
            );
            batch::status_frame(status(""))
                .expect("a status frame with a 64-character digest fits in a frame")
        }
    }
}

fn backoff(config: &Config) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(config.reconnect_min)
        .with_max_delay(config.reconnect_max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// `now + d`, saturating far in the future instead of overflowing.
fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}
