//! The memory of large frames is bounded across connections: clients that
//! announce a 1 MiB (tag-0) frame and send only part of it hold no more
//! than the shared budget, those beyond it wait (their sockets are not
//! read), and once the frames are finished every one of them is spooled:
//! backpressure, not drops. What is measured is the budget's own account,
//! not the process's memory.

mod support;

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warden_agent::drops::DropReporter;
use warden_agent::ingest::Ingest;
use warden_agent::metrics::Metrics;
use warden_agent::socket::budget::FrameBudget;
use warden_agent::socket::conn::ConnShared;
use warden_agent::socket::listener;
use warden_agent::socket::peer::Allowlist;
use warden_agent::socket::server::Acceptor;
use warden_spool::{Spool, SpoolConfig};

/// The budget: room for two largest frames.
const BUDGET: u64 = 2 << 20;
const CLIENTS: usize = 8;
/// Records per frame: just under the 1 MiB a tag-0 frame may hold.
const RECORDS: usize = 4000;

fn tag0_frame(session: &str) -> Vec<u8> {
    let urls = support::urls("budget.example", 0..RECORDS);
    let mut request = support::request(session, 0, &urls);
    // Pad the URLs so the frame is large.
    for log in &mut request.logs {
        if let Some(warden_proto::wire::boundary_log::Resource::HttpRequest(r)) = &mut log.resource
        {
            r.url.push_str(&"x".repeat(200));
        }
    }
    let payload = request.encode_to_vec();
    assert!(
        payload.len() > 900_000 && payload.len() <= 1 << 20,
        "{}",
        payload.len()
    );
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend(payload);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_large_frames_hold_no_more_than_the_budget_and_then_all_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(SpoolConfig {
        max_bytes: 1 << 30,
        ..SpoolConfig::new(dir.path().join("spool"))
    })
    .await
    .unwrap();
    let metrics = Metrics::new();
    let ingest = Ingest::new(
        spool.clone(),
        DropReporter::new(metrics.clone()),
        metrics.clone(),
    );
    let socket = dir.path().join("budget.sock");
    let bound = listener::bind(&socket, None).unwrap();
    let budget = FrameBudget::new(BUDGET);
    let stop = CancellationToken::new();
    let acceptor = Acceptor {
        listener: bound.listener,
        allowlist: Allowlist::default(),
        max_connections: 1024,
        shared: Arc::new(ConnShared {
            ingest,
            idle_timeout: Duration::from_secs(600),
            budget: budget.clone(),
        }),
        connections: TaskTracker::new(),
    };
    tokio::spawn(acceptor.run(stop.clone(), stop.clone()));

    // Every client announces its frame and sends the first 64 KiB of it.
    let frames: Vec<Vec<u8>> = (0..CLIENTS)
        .map(|c| tag0_frame(&format!("s-{c}")))
        .collect();
    let mut streams = Vec::new();
    for frame in &frames {
        let mut stream = UnixStream::connect(&socket).await.unwrap();
        stream.write_all(&frame[..64 * 1024]).await.unwrap();
        streams.push(stream);
    }
    // Every frame has the same size; two fit the budget, a third does not.
    let payload = (frames[0].len() - 4) as u64;
    assert!(2 * payload <= BUDGET && 3 * payload > BUDGET);
    support::eventually_sync("two frames hold the budget", || {
        budget.in_use() == 2 * payload
    })
    .await;
    // The others wait for it: nothing more is accounted, nothing spooled.
    assert_eq!(budget.total(), BUDGET);
    assert_eq!(budget.in_use(), 2 * payload);
    assert_eq!(metrics.records_accepted.get(), 0);

    // Finish every frame: each is spooled whole, as budget frees up.
    let writers: Vec<_> = streams
        .into_iter()
        .zip(frames)
        .map(|(mut stream, frame)| {
            tokio::spawn(async move {
                stream.write_all(&frame[64 * 1024..]).await.unwrap();
                stream.shutdown().await.unwrap();
                stream
            })
        })
        .collect();
    let expected = (CLIENTS * RECORDS) as u64;
    support::eventually_sync("every frame was spooled", || {
        assert!(budget.in_use() <= BUDGET);
        metrics.records_accepted.get() == expected
    })
    .await;
    for writer in writers {
        writer.await.unwrap();
    }
    support::eventually_sync("the budget is free again", || budget.in_use() == 0).await;
    assert_eq!(spool.stats().records, expected);
    let dropped = metrics.render(&spool.stats());
    assert!(
        !dropped.lines().any(
            |l| l.starts_with("agent_boundary_log_proxy_batches_dropped_total")
                && !l.ends_with(" 0")
        ),
        "nothing was dropped:\n{dropped}"
    );
    stop.cancel();
}
