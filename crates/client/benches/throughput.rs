//! Records per second through the client into a Unix socket, with batches
//! as large as fit in a frame (about 200 records of 150 bytes).
//!
//! Each iteration starts an auditor, records `RECORDS` prepared records
//! (block mode, so none is dropped), closes it and checks that everything
//! was delivered; the time covers recording, batching, encoding, writing
//! and the drain. `plain` writes to a sink that reads and discards;
//! `acknowledged` to a sink that decodes every frame and acknowledges it
//! (an agent without a spool).
//!
//! Run: `cargo bench -p warden-client --bench throughput`

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::FramedRead;
use warden_client::{AckPolicy, Auditor, Config, Overflow, Record};
use warden_proto::codec::{Frame, FrameCodec, Tag, encode_frame};
use warden_proto::wire::{AckAccepted, FrameAck, frame_ack::Outcome};

const RECORDS: usize = 200_000;

fn records() -> Vec<Record> {
    let time = Timestamp::from_second(1_765_227_526).unwrap();
    (0..RECORDS)
        .map(|i| {
            let url = format!("https://api.github.com/repos/coder/coder/pulls/{i:08}/files?per_page=100&page=2&direction=desc&sort=created");
            Record::allow("GET", url, "domain=api.github.com").with_time(Some(time))
        })
        .collect()
}

fn config(path: &Path, acks: AckPolicy) -> Config {
    let mut config = Config::new(path);
    config.batch_max_records = 1000;
    config.buffer_records = 20_000;
    config.queue_capacity = 8192;
    config.overflow = Overflow::Block { timeout: None };
    config.acknowledgements = acks;
    config.close_timeout = Duration::from_secs(60);
    config
}

async fn discard(mut stream: UnixStream) {
    let mut buf = vec![0u8; 1 << 16];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
}

async fn acknowledge(stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut frames = FramedRead::new(read, FrameCodec);
    let mut numbered = 0u64;
    let mut out = BytesMut::new();
    while let Some(Ok(Ok(frame))) = frames.next().await {
        out.clear();
        let reply = match frame.frame {
            Frame::AckRequest(_) => (
                Tag::AckAccepted,
                Frame::AckAccepted(AckAccepted { version: 1 }),
            ),
            Frame::Logs(_) | Frame::Status(_) | Frame::EmptyEnvelope => {
                numbered += 1;
                let records = match &frame.frame {
                    Frame::Logs(logs) => logs.logs.len() as u32,
                    _ => 0,
                };
                let ack = FrameAck {
                    frame: numbered,
                    outcome: Outcome::Durable as i32,
                    records,
                    rejected: 0,
                };
                (Tag::FrameAck, Frame::FrameAck(ack))
            }
            _ => break,
        };
        encode_frame(reply.0, &reply.1, &mut out).unwrap();
        if write.write_all(&out).await.is_err() {
            break;
        }
    }
}

fn serve(listener: UnixListener, acks: bool) {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if acks {
                tokio::spawn(acknowledge(stream));
            } else {
                tokio::spawn(discard(stream));
            }
        }
    });
}

fn throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("client_throughput");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(10);
    for (name, acks) in [("plain", AckPolicy::Off), ("acknowledged", AckPolicy::Auto)] {
        let path = dir.path().join(format!("{name}.sock"));
        runtime.block_on(async {
            serve(UnixListener::bind(&path).unwrap(), acks == AckPolicy::Auto);
        });
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batch = records();
                    let config = config(&path, acks);
                    total += runtime.block_on(async move {
                        let started = Instant::now();
                        let auditor = Auditor::start(config).unwrap();
                        for record in batch {
                            auditor.record(record).await.unwrap();
                        }
                        let summary = auditor.close().await.unwrap();
                        let elapsed = started.elapsed();
                        assert!(summary.is_complete(), "{summary}");
                        elapsed
                    });
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
