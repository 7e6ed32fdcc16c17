//! Writes committed records' lines from a dedicated thread, then tells the
//! store which lines are out.
//!
//! The order is the outbox protocol: records are committed (due for
//! printing); the lines are written; only then does the store note them
//! printed. A crash before the note prints those lines again at the next
//! start (marked `replayed=true`), a crash before the write prints them for
//! the first time, so no committed record misses its line. Notes are sent at
//! most every [`MARK_EVERY`] (and always when printing stops), which bounds
//! the window of lines a crash prints twice to about that long.
//!
//! Writing happens on its own thread because stderr can block (a full pipe)
//! and must not stall the async runtime; the bounded queue in front of it
//! slows ingest down instead of buffering without limit.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use warden_store::{RecordId, Store};

use super::LineSink;
use crate::metrics::Metrics;

/// Queued print jobs (one per commit) before ingest waits.
const QUEUE: usize = 256;
/// Jobs written with one call when they queue up, up to this many bytes.
const COALESCE_BYTES: usize = 1 << 20;
/// How often printed lines are noted in the store (at most): often enough
/// that a crash repeats little (`docs/stderr-format.md` asks for at least
/// every 100 ms), rarely enough that noting costs nothing per line.
pub const MARK_EVERY: Duration = Duration::from_millis(50);

/// Lines of one commit and the ids of their records.
struct Job {
    lines: String,
    ids: Vec<RecordId>,
}

enum Message {
    Print(Job),
    /// Print what is queued before this, then stop.
    Stop,
}

/// Queues lines for printing; cheap to clone.
#[derive(Clone)]
pub struct PrintQueue {
    jobs: mpsc::Sender<Message>,
}

impl PrintQueue {
    /// Queues the lines of committed records, waiting for room. If the
    /// printer is already gone the lines stay in the outbox for the next
    /// start.
    pub async fn print(&self, lines: String, ids: Vec<RecordId>) {
        if ids.is_empty() {
            return;
        }
        if self
            .jobs
            .send(Message::Print(Job { lines, ids }))
            .await
            .is_err()
        {
            tracing::warn!("boundary lines left for the next start: the printer has stopped");
        }
    }
}

/// The printing thread and the task that reports printed lines to the store.
pub struct Printer {
    queue: PrintQueue,
    writer: JoinHandle<()>,
    marker: JoinHandle<()>,
}

impl Printer {
    /// Starts printing to `sink`.
    pub fn start(sink: Arc<dyn LineSink>, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Printer {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let (printed, marks) = mpsc::unbounded_channel();
        let writer =
            tokio::task::spawn_blocking(move || write_loop(queue, &*sink, &metrics, printed));
        let marker = tokio::spawn(mark_loop(marks, store));
        Printer {
            queue: PrintQueue { jobs },
            writer,
            marker,
        }
    }

    pub fn queue(&self) -> PrintQueue {
        self.queue.clone()
    }

    /// Prints what is queued, reports it to the store, and stops. Lines
    /// queued later (by a call that outlived the shutdown grace period) stay
    /// in the outbox for the next start.
    pub async fn shutdown(self) {
        // A send only fails when the writer is gone already.
        let _ = self.queue.jobs.send(Message::Stop).await;
        drop(self.queue);
        if let Err(e) = self.writer.await {
            tracing::error!(error = %e, "the boundary line printer failed");
        }
        if let Err(e) = self.marker.await {
            tracing::error!(error = %e, "reporting printed lines failed");
        }
    }
}

fn write_loop(
    mut queue: mpsc::Receiver<Message>,
    sink: &dyn LineSink,
    metrics: &Metrics,
    printed: mpsc::UnboundedSender<Vec<RecordId>>,
) {
    let mut failing = false;
    while let Some(message) = queue.blocking_recv() {
        let Message::Print(first) = message else {
            // Refuse new work; what is already queued is still printed.
            queue.close();
            continue;
        };
        let mut lines = first.lines;
        let mut ids = first.ids;
        while lines.len() < COALESCE_BYTES {
            match queue.try_recv() {
                Ok(Message::Print(job)) => {
                    lines.push_str(&job.lines);
                    ids.extend(job.ids);
                }
                Ok(Message::Stop) => queue.close(),
                Err(_) => break,
            }
        }
        match sink.write_lines(lines.as_bytes()) {
            Ok(()) => {
                metrics.lines_printed.inc_by(ids.len() as u64);
                if failing {
                    tracing::info!("boundary lines are being printed again");
                    failing = false;
                }
                let _ = printed.send(ids);
            }
            Err(e) => {
                metrics.line_write_errors.inc();
                // Once per outage; the lines stay in the outbox and are
                // printed at the next start.
                if !failing {
                    tracing::error!(error = %e, lines = ids.len(), "writing boundary lines failed; they will be printed at the next start");
                    failing = true;
                }
            }
        }
    }
}

async fn mark_loop(mut marks: mpsc::UnboundedReceiver<Vec<RecordId>>, store: Arc<dyn Store>) {
    let mut printed: Vec<RecordId> = Vec::new();
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            ids = marks.recv() => match ids {
                Some(ids) => printed.extend(ids),
                // Printing stopped: note what is left, now.
                None => break,
            },
            _ = tokio::time::sleep_until(next), if !printed.is_empty() => {
                note(&*store, std::mem::take(&mut printed)).await;
                next = tokio::time::Instant::now() + MARK_EVERY;
            }
        }
    }
    if !printed.is_empty() {
        note(&*store, printed).await;
    }
}

async fn note(store: &dyn Store, ids: Vec<RecordId>) {
    if let Err(e) = store.mark_printed(ids).await {
        tracing::warn!(error = %e.chain(), "could not note printed boundary lines; they may be printed again at the next start");
    }
}
