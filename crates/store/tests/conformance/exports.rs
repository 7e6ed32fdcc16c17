//! Export cursors and leases: one holder at a time, taken over once the
//! lease expires or is released, the cursor kept across a restart and never
//! moved by a holder that lost its lease.

use std::time::{Duration, Instant};

use super::*;

const TTL: Duration = Duration::from_secs(60);

pub async fn an_export_cursor_starts_at_zero_and_survives_a_restart(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let me = Uuid::new_v4();
    assert_eq!(store.claim_export("otlp", me, TTL).await.unwrap(), Some(0));
    assert!(store.save_export_cursor("otlp", me, 41, TTL).await.unwrap());
    // Never backwards (a late save of an older batch).
    assert!(store.save_export_cursor("otlp", me, 7, TTL).await.unwrap());
    // Renewing returns the cursor.
    assert_eq!(store.claim_export("otlp", me, TTL).await.unwrap(), Some(41));
    // Sinks are independent.
    assert_eq!(
        store.claim_export("syslog", me, TTL).await.unwrap(),
        Some(0)
    );
    store.close().await.unwrap();

    let store = factory.open().await;
    let states = store.export_states().await.unwrap();
    assert_eq!(
        states
            .iter()
            .map(|s| (s.sink.as_str(), s.cursor, s.holder))
            .collect::<Vec<_>>(),
        [("otlp", 41, Some(me)), ("syslog", 0, Some(me))]
    );
    // The same holder (a restart keeps no id, but a holder that does) goes on.
    assert_eq!(store.claim_export("otlp", me, TTL).await.unwrap(), Some(41));
}

pub async fn one_holder_at_a_time_until_release(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(store.claim_export("ocsf", a, TTL).await.unwrap(), Some(0));
    assert_eq!(store.claim_export("ocsf", b, TTL).await.unwrap(), None);
    // The loser cannot move the cursor.
    assert!(!store.save_export_cursor("ocsf", b, 99, TTL).await.unwrap());
    assert!(store.save_export_cursor("ocsf", a, 5, TTL).await.unwrap());
    // Releasing by someone else changes nothing.
    store.release_export("ocsf", b).await.unwrap();
    assert_eq!(store.claim_export("ocsf", b, TTL).await.unwrap(), None);
    store.release_export("ocsf", a).await.unwrap();
    assert_eq!(store.claim_export("ocsf", b, TTL).await.unwrap(), Some(5));
    // Now the first holder is the one locked out.
    assert_eq!(store.claim_export("ocsf", a, TTL).await.unwrap(), None);
    assert!(!store.save_export_cursor("ocsf", a, 50, TTL).await.unwrap());
    let state = &store.export_states().await.unwrap()[0];
    assert_eq!((state.cursor, state.holder), (5, Some(b)));
}

pub async fn an_expired_lease_is_taken_over(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let short = warden_store::exports::MIN_LEASE;
    assert_eq!(store.claim_export("otlp", a, short).await.unwrap(), Some(0));
    assert!(store.save_export_cursor("otlp", a, 3, short).await.unwrap());
    // `a` dies without releasing: `b` gets the sink once the lease ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    let cursor = loop {
        if let Some(cursor) = store.claim_export("otlp", b, TTL).await.unwrap() {
            break cursor;
        }
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(cursor, 3);
    // The stale holder learns it lost the lease.
    assert!(!store.save_export_cursor("otlp", a, 10, TTL).await.unwrap());
    assert_eq!(store.claim_export("otlp", a, TTL).await.unwrap(), None);
}

/// Expands to the export tests.
macro_rules! exports_suite {
    ($factory:expr) => {
        conformance::suite!(@tests $factory;
            an_export_cursor_starts_at_zero_and_survives_a_restart,
            one_holder_at_a_time_until_release,
            an_expired_lease_is_taken_over,
        );
    };
}
pub(crate) use exports_suite;
