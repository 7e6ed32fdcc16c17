//! Formatting boundary lines (`docs/stderr-format.md`): the control plane
//! writes one per committed record, so its cost is paid per record at
//! saturation. 1,000 records shaped like `warden bench`'s (200-byte URLs,
//! one session, event times 100 µs apart, so ten lines share a
//! millisecond and most share their second), in each `--log-format`.
//!
//! Criterion prints lines/s (`thrpt`): `cargo bench -p warden-server
//! --bench lines`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;
use warden_proto::domain::Decision;
use warden_server::line::{LineFormat, LineRecord, write_line};

/// 2025-12-08T20:58:46Z: event times start here.
const T0: i64 = 1_765_227_526;
const LINES: usize = 1_000;

fn urls() -> Vec<String> {
    (0..LINES)
        .map(|i| {
            let mut url = format!("https://api.example.com/v1/repos/warden/items/{i:08}?q=");
            url.extend(std::iter::repeat_n('x', 200 - url.len()));
            url
        })
        .collect()
}

fn lines(c: &mut Criterion) {
    let urls = urls();
    let start = Timestamp::new(T0, 0).unwrap();
    let workspace_id = Uuid::from_u128(0x0b6f_8f0e_7a0c_4d7e_9a53_1f2d_3c4b_5a69);
    let session = "0b6f8f0e-7a0c-4d7e-9a53-1f2d3c4b5a69";
    let records: Vec<LineRecord<'_>> = urls
        .iter()
        .enumerate()
        .map(|(i, url)| {
            let at = start + SignedDuration::from_micros(100 * i as i64);
            LineRecord {
                workspace_id,
                workspace_name: "dev",
                workspace_owner: "alice",
                agent_name: "main",
                decision: if i % 10 == 0 {
                    Decision::Deny
                } else {
                    Decision::Allow
                },
                method: "GET",
                url,
                event_time: Some(at),
                received_at: at + SignedDuration::from_millis(3),
                session_id: Some(session),
                sequence_number: i as i32,
                matched_rule: "domain=api.example.com",
                process: "curl",
                url_original_bytes: None,
                batch_id: workspace_id,
                replayed: false,
            }
        })
        .collect();
    let mut group = c.benchmark_group("lines");
    group.throughput(Throughput::Elements(LINES as u64));
    for (name, format) in [
        ("text", LineFormat::Text),
        ("json", LineFormat::Json),
        ("coder", LineFormat::Coder),
    ] {
        let mut out = String::with_capacity(LINES * 512);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for record in &records {
                    write_line(&mut out, format, record);
                }
                out.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lines);
criterion_main!(benches);
