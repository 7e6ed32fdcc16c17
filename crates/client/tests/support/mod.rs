//! A scripted fake agent for the client tests: a real `UnixListener` that
//! decodes every frame with `warden_proto::codec::FrameCodec` and reports it
//! on a channel. It can behave like a reference agent (closes the connection
//! on an extension tag) or like a Warden agent (answers `AckAccepted` and one
//! `FrameAck` per frame), and can drop a connection mid-stream.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use warden_proto::codec::{DecodedFrame, Frame, FrameCodec, Tag, encode_frame};
use warden_proto::wire::{
    AckAccepted, BoundaryStatus, FrameAck, ReportBoundaryLogsRequest, frame_ack::Outcome,
};

/// Longest a test waits for the fake agent before calling it a hang.
const HANG: Duration = Duration::from_secs(60);

/// How far a connection goes before the agent drops it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// Acknowledge at most this many frames.
    pub ack: Option<u64>,
    /// Close the connection after reading this many frames (after the
    /// acknowledgement request).
    pub read: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct Script {
    /// Answer the acknowledgement extension (a Warden agent); otherwise
    /// close the connection on any extension tag (a reference agent).
    pub acks: bool,
    pub outcome: Outcome,
    /// Limits of the first connection.
    pub first_connection: Limits,
    /// Limits of every later connection.
    pub later_connections: Limits,
}

impl Script {
    pub fn reference() -> Script {
        Script {
            acks: false,
            outcome: Outcome::Durable,
            first_connection: Limits::default(),
            later_connections: Limits::default(),
        }
    }

    pub fn warden() -> Script {
        Script {
            acks: true,
            ..Script::reference()
        }
    }

    fn limits(&self, conn: u64) -> Limits {
        if conn == 1 {
            self.first_connection
        } else {
            self.later_connections
        }
    }
}

#[derive(Clone, Debug)]
pub enum Event {
    Connected { conn: u64 },
    Frame { conn: u64, frame: DecodedFrame },
    Closed { conn: u64 },
}

pub struct FakeAgent {
    pub path: PathBuf,
    events: mpsc::UnboundedReceiver<Event>,
    stop: CancellationToken,
    server: Option<JoinHandle<()>>,
}

impl FakeAgent {
    /// Binds `path` (ready to accept when this returns) and serves it.
    pub fn start(path: &Path, script: Script) -> FakeAgent {
        let listener = UnixListener::bind(path).expect("bind the fake agent socket");
        let (tx, events) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, script, tx, stop.clone()));
        FakeAgent {
            path: path.to_owned(),
            events,
            stop,
            server: Some(server),
        }
    }

    /// Kills the agent: stops accepting, closes every connection, removes
    /// the socket file. Events already reported stay readable.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("fake agent task");
        }
        let _ = std::fs::remove_file(&self.path);
    }

    pub async fn next_event(&mut self) -> Event {
        tokio::time::timeout(HANG, self.events.recv())
            .await
            .expect("the fake agent saw nothing for 60 s")
            .expect("the fake agent is gone")
    }

    /// The next frame, on any connection.
    pub async fn next_frame(&mut self) -> (u64, DecodedFrame) {
        loop {
            if let Event::Frame { conn, frame } = self.next_event().await {
                return (conn, frame);
            }
        }
    }

    /// The next logs frame, skipping other frames.
    pub async fn next_logs(&mut self) -> ReportBoundaryLogsRequest {
        loop {
            if let Frame::Logs(logs) = self.next_frame().await.1.frame {
                return logs;
            }
        }
    }

    /// Everything up to and including the status frame that carries the
    /// final sequence number.
    pub async fn until_final_status(&mut self) -> Received {
        let mut received = Received::default();
        loop {
            let event = self.next_event().await;
            let done = matches!(
                &event,
                Event::Frame { frame: DecodedFrame { frame: Frame::Status(s), .. }, .. }
                    if s.final_sequence_number.is_some()
            );
            received.add(event);
            if done {
                return received;
            }
        }
    }

    /// Events already reported, without waiting.
    pub fn drain(&mut self) -> Received {
        let mut received = Received::default();
        while let Ok(event) = self.events.try_recv() {
            received.add(event);
        }
        received
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the agent saw, in order.
#[derive(Debug, Default)]
pub struct Received {
    pub events: Vec<Event>,
}

impl Received {
    fn add(&mut self, event: Event) {
        self.events.push(event);
    }

    pub fn frames(&self) -> impl Iterator<Item = (u64, &DecodedFrame)> {
        self.events.iter().filter_map(|e| match e {
            Event::Frame { conn, frame } => Some((*conn, frame)),
            _ => None,
        })
    }

    pub fn logs(&self) -> impl Iterator<Item = &ReportBoundaryLogsRequest> {
        self.frames().filter_map(|(_, f)| match &f.frame {
            Frame::Logs(logs) => Some(logs),
            _ => None,
        })
    }

    pub fn statuses(&self) -> impl Iterator<Item = &BoundaryStatus> {
        self.frames().filter_map(|(_, f)| match &f.frame {
            Frame::Status(status) => Some(status),
            _ => None,
        })
    }

    /// How many times each sequence number arrived.
    pub fn sequence_counts(&self) -> BTreeMap<i32, usize> {
        let mut counts = BTreeMap::new();
        for logs in self.logs() {
            for log in &logs.logs {
                *counts.entry(log.sequence_number).or_default() += 1;
            }
        }
        counts
    }

    /// Records as a server that deduplicates by (session, sequence) stores them.
    pub fn stored(&self) -> Vec<i32> {
        self.sequence_counts().into_keys().collect()
    }

    pub fn connections(&self) -> u64 {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Connected { .. }))
            .count() as u64
    }

    pub fn extend(&mut self, other: Received) {
        self.events.extend(other.events);
    }
}

async fn serve(
    listener: UnixListener,
    script: Script,
    events: mpsc::UnboundedSender<Event>,
    stop: CancellationToken,
) {
    let mut connections = tokio::task::JoinSet::new();
    let mut count = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { break };
                count += 1;
                let _ = events.send(Event::Connected { conn: count });
                connections.spawn(connection(
                    count,
                    stream,
                    script.clone(),
                    events.clone(),
                    stop.clone(),
                ));
            }
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn connection(
    conn: u64,
    stream: UnixStream,
    script: Script,
    events: mpsc::UnboundedSender<Event>,
    stop: CancellationToken,
) {
    let limits = script.limits(conn);
    let (read, mut write) = stream.into_split();
    let mut frames = FramedRead::new(read, FrameCodec);
    let mut acking = false;
    let mut numbered = 0u64;
    loop {
        let item = tokio::select! {
            () = stop.cancelled() => break,
            item = frames.next() => item,
        };
        let Some(Ok(Ok(frame))) = item else {
            break;
        };
        let _ = events.send(Event::Frame {
            conn,
            frame: frame.clone(),
        });
        if frame.tag.is_extension() {
            if !script.acks {
                // A reference agent: the unknown tag leaves the stream
                // unaligned, so it closes the connection.
                break;
            }
            if frame.tag == Tag::AckRequest && numbered == 0 && !acking {
                acking = true;
                if send(
                    &mut write,
                    Tag::AckAccepted,
                    Frame::AckAccepted(AckAccepted { version: 1 }),
                )
                .await
                .is_err()
                {
                    break;
                }
                continue;
            }
        }
        if !acking {
            continue;
        }
        numbered += 1;
        if limits.ack.is_none_or(|max| numbered <= max) {
            let records = match &frame.frame {
                Frame::Logs(logs) => logs.logs.len() as u32,
                _ => 0,
            };
            let ack = FrameAck {
                frame: numbered,
                outcome: script.outcome as i32,
                records,
                rejected: 0,
            };
            if send(&mut write, Tag::FrameAck, Frame::FrameAck(ack))
                .await
                .is_err()
            {
                break;
            }
        }
        if limits.read.is_some_and(|max| numbered >= max) {
            break;
        }
    }
    let _ = events.send(Event::Closed { conn });
}

async fn send(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    tag: Tag,
    frame: Frame,
) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    encode_frame(tag, &frame, &mut buf).expect("encode a fake agent frame");
    write.write_all(&buf).await
}

/// Sequence numbers `0..n`.
pub fn all(n: i32) -> Vec<i32> {
    (0..n).collect()
}
