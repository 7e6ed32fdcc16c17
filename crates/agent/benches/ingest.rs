//! Socket-to-spool ingest: clients write frames to the agent's socket, the
//! agent reads each frame once (validates it, notes its session and
//! sequence numbers), stamps the peer and appends it as it came to a real
//! spool (group commit, fsync); an iteration ends when every record is
//! durable. A drain task acknowledges what was spooled, as a fast control
//! plane would, so the spool stays at its steady-state size.
//!
//! Run: `cargo bench -p warden-agent --bench ingest`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warden_agent::drops::DropReporter;
use warden_agent::ingest::Ingest;
use warden_agent::metrics::Metrics;
use warden_agent::socket::budget::{DEFAULT_FRAME_MEMORY, FrameBudget};
use warden_agent::socket::conn::ConnShared;
use warden_agent::socket::listener;
use warden_agent::socket::peer::Allowlist;
use warden_agent::socket::server::Acceptor;
use warden_proto::codec::{Frame, Tag, encode_frame};
use warden_proto::wire::{self, BoundaryLog, ReportBoundaryLogsRequest, boundary_log};
use warden_spool::{Spool, SpoolConfig};

struct Bench {
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    metrics: Arc<Metrics>,
}

fn record(seq: i32) -> BoundaryLog {
    BoundaryLog {
        allowed: seq % 3 != 0,
        time: Some(wire::Timestamp {
            seconds: 1_765_227_526,
            nanos: seq,
        }),
        resource: Some(boundary_log::Resource::HttpRequest(
            boundary_log::HttpRequest {
                method: "GET".into(),
                url: format!("https://github.com/coder/coder/pull/{seq}"),
                matched_rule: "domain=github.com".into(),
            },
        )),
        sequence_number: seq,
    }
}

/// `frames` frames of `per_frame` records, encoded back to back.
fn stream_bytes(tag: Tag, frames: usize, per_frame: usize) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for f in 0..frames {
        let request = ReportBoundaryLogsRequest {
            logs: (0..per_frame)
                .map(|i| record((f * per_frame + i) as i32))
                .collect(),
            session_id: "0b6f8f0e-7a0c-4d7e-9a53-1f2d3c4b5a69".into(),
            confined_process_name: "curl".into(),
            ..Default::default()
        };
        encode_frame(tag, &Frame::Logs(request), &mut buf).unwrap();
    }
    buf.to_vec()
}

async fn start() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        max_bytes: 1 << 30,
        ..SpoolConfig::new(dir.path().join("spool"))
    };
    let (spool, _) = Spool::open(config).await.unwrap();
    let metrics = Metrics::new();
    let drops = DropReporter::new(metrics.clone());
    let ingest = Ingest::new(spool.clone(), drops, metrics.clone());
    let socket = dir.path().join("bench.sock");
    let bound = listener::bind(&socket, None).unwrap();
    let acceptor = Acceptor {
        listener: bound.listener,
        allowlist: Allowlist::default(),
        max_connections: 1024,
        shared: Arc::new(ConnShared {
            ingest,
            idle_timeout: Duration::from_secs(600),
            budget: FrameBudget::new(DEFAULT_FRAME_MEMORY),
        }),
        connections: TaskTracker::new(),
    };
    tokio::spawn(acceptor.run(CancellationToken::new(), CancellationToken::new()));
    // A control plane that acknowledges everything at once.
    tokio::spawn(async move {
        let mut cursor = None;
        loop {
            let entries = spool.read_after(cursor, 10_000, 64 << 20).await.unwrap();
            cursor = entries.last().map(|e| e.id);
            let ids: Vec<_> = entries.iter().map(|e| e.id).collect();
            spool.ack(&ids).await.unwrap();
        }
    });
    Bench {
        _dir: dir,
        socket,
        metrics,
    }
}

/// Sends `bytes` on `clients` connections at once and waits until all
/// `records` more records are durable.
async fn round(bench: &Bench, bytes: &Arc<Vec<u8>>, clients: usize, records: u64) {
    let target = bench.metrics.records_accepted.get() + records;
    let mut writers = Vec::new();
    for _ in 0..clients {
        let (socket, bytes) = (bench.socket.clone(), bytes.clone());
        writers.push(tokio::spawn(async move {
            let mut stream = UnixStream::connect(socket).await.unwrap();
            stream.write_all(&bytes).await.unwrap();
            stream.shutdown().await.unwrap();
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    while bench.metrics.records_accepted.get() < target {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn ingest(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bench = runtime.block_on(start());
    let mut group = c.benchmark_group("socket_to_spool");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let cases = [
        ("tag2_10_per_frame_4_clients", Tag::Envelope, 2000, 10, 4),
        ("tag2_10_per_frame_1_client", Tag::Envelope, 4000, 10, 1),
        ("tag1_100_per_frame_4_clients", Tag::V1, 200, 100, 4),
        ("tag0_1000_per_frame_2_clients", Tag::Legacy, 20, 1000, 2),
    ];
    for (name, tag, frames, per_frame, clients) in cases {
        let bytes = Arc::new(stream_bytes(tag, frames, per_frame));
        let records = (frames * per_frame * clients) as u64;
        group.throughput(Throughput::Elements(records));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        round(&bench, &bytes, clients, records).await;
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
