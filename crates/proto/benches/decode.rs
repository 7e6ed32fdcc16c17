//! Decoding throughput of the frame codec on typical traffic: tag-2 frames of
//! 10 records of about 150 bytes each, as current boundary clients send them.

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio_util::codec::Decoder;
use warden_proto::codec::{Frame, FrameCodec, Tag, encode_frame};
use warden_proto::wire::{BoundaryLog, ReportBoundaryLogsRequest, Timestamp, boundary_log};

const RECORDS_PER_FRAME: usize = 10;
const FRAMES: usize = 1000;

fn typical_frame(frame: usize) -> Frame {
    let logs = (0..RECORDS_PER_FRAME)
        .map(|i| BoundaryLog {
            allowed: i % 3 != 0,
            time: Some(Timestamp {
                seconds: 1_765_227_526 + frame as i64,
                nanos: 93_456_789,
            }),
            sequence_number: (frame * RECORDS_PER_FRAME + i) as i32,
            resource: Some(boundary_log::Resource::HttpRequest(
                boundary_log::HttpRequest {
                    method: "GET".into(),
                    url: format!("https://api.github.com/repos/coder/coder/pulls/{i:05}/files?page=2&per_page=100"),
                    matched_rule: "domain=api.github.com path=/repos/*".into(),
                },
            )),
        })
        .collect();
    Frame::Logs(ReportBoundaryLogsRequest {
        logs,
        session_id: "0b6f8f0e-7a0c-4d7e-9a53-1f2d3c4b5a69".into(),
        confined_process_name: "claude".into(),
        ..Default::default()
    })
}

fn decode(c: &mut Criterion) {
    let mut stream = BytesMut::new();
    for i in 0..FRAMES {
        encode_frame(Tag::Envelope, &typical_frame(i), &mut stream).unwrap();
    }
    let stream = stream.freeze();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements((FRAMES * RECORDS_PER_FRAME) as u64));
    group.bench_function("tag2_frames_of_10_records/records", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&stream[..]);
            let mut records = 0;
            while let Some(item) = FrameCodec.decode(&mut buf).unwrap() {
                if let Frame::Logs(logs) = item.unwrap().frame {
                    records += logs.logs.len();
                }
            }
            assert_eq!(records, FRAMES * RECORDS_PER_FRAME);
        })
    });
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("tag2_frames_of_10_records/bytes", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&stream[..]);
            while let Some(item) = FrameCodec.decode(&mut buf).unwrap() {
                std::hint::black_box(item.unwrap());
            }
        })
    });
    group.finish();
    eprintln!(
        "stream: {} frames, {} bytes, {:.0} bytes per record",
        FRAMES,
        stream.len(),
        stream.len() as f64 / (FRAMES * RECORDS_PER_FRAME) as f64
    );
}

criterion_group!(benches, decode);
criterion_main!(benches);
