//! Admission and idle limits for the server's connections, so that clients
//! that never authenticate cannot use up the process's file descriptors or
//! hold connections open forever.
//!
//! Every accepted connection is registered and starts *unauthenticated*; it
//! becomes *authenticated* once one of its requests passes the agent token
//! check or the admin token check ([`note_authenticated`]). The rules
//! ([`ConnectionLimits`]):
//! - at most `max_connections` connections in all, and at most
//!   `max_connections - reserved` unauthenticated ones: the reserved slots
//!   stay free for connections that proved a token (established agents,
//!   admin clients) however many strangers connect;
//! - when a new connection would go over a limit, the unauthenticated
//!   connection that has been idle longest (no request in flight) is closed
//!   to make room, so a flood of idle connections cannot lock out a health
//!   check or an agent that connects anew; when no such connection exists,
//!   the new one is closed at once;
//! - an unauthenticated connection is closed `unauthenticated_timeout`
//!   after it opened or its last request began or ended (a TLS handshake or
//!   an HTTP/2 preface that never turns into a request, a request that never
//!   completes);
//! - an authenticated connection is closed after `idle_timeout` without a
//!   request in flight (its client reconnects when it needs to).
//!
//! A request is in flight from when its headers arrived until its response
//! body is finished or dropped, so a long record stream keeps its
//! connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::config::ConnectionLimits;

/// Why the server closed a connection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The limits were reached and no idle unauthenticated connection could
    /// make room: closed as soon as it was accepted.
    Refused,
    /// Closed to make room for a new connection.
    Evicted,
    /// Unauthenticated for longer than `unauthenticated_timeout`.
    Unauthenticated,
    /// Authenticated, but idle for longer than `idle_timeout`.
    Idle,
}

impl CloseReason {
    fn label(self) -> &'static str {
        match self {
            CloseReason::Refused => "refused",
            CloseReason::Evicted => "evicted",
            CloseReason::Unauthenticated => "unauthenticated_timeout",
            CloseReason::Idle => "idle_timeout",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// The connection metrics on `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionMetrics {
    open: Family<StateLabel, Gauge>,
    closed: Family<ReasonLabel, Counter>,
}

impl ConnectionMetrics {
    /// Adds the metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections_open",
            "Open connections, by whether they presented a valid token",
            self.open.clone(),
        );
        registry.register(
            "connections_closed_by_server",
            "Connections the server closed itself, by reason (refused: over the limits at accept; evicted: idle and unauthenticated, closed to make room; unauthenticated_timeout; idle_timeout)",
            self.closed.clone(),
        );
    }

    fn closed(&self, reason: CloseReason) {
        self.closed
            .get_or_create(&ReasonLabel {
                reason: reason.label(),
            })
            .inc();
    }

    fn set_open(&self, authenticated: usize, unauthenticated: usize) {
        let set = |state, n: usize| {
            self.open
                .get_or_create(&StateLabel { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        set("authenticated", authenticated);
        set("unauthenticated", unauthenticated);
    }
}

/// Every open connection, and the limits they are held to.
#[derive(Debug)]
pub(crate) struct Connections {
    limits: ConnectionLimits,
    epoch: Instant,
    table: Mutex<Table>,
    metrics: Arc<ConnectionMetrics>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Arc<Connection>>,
    unauthenticated: usize,
}

impl Table {
    fn publish(&self, metrics: &ConnectionMetrics) {
        metrics.set_open(self.open.len() - self.unauthenticated, self.unauthenticated);
    }
}

impl Connections {
    pub(crate) fn new(limits: ConnectionLimits, metrics: Arc<ConnectionMetrics>) -> Arc<Self> {
        Arc::new(Connections {
            limits,
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table stays consistent between statements; a panic elsewhere
        // must not stop the server from accepting.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new connection, closing the longest-idle unauthenticated
    /// one when a limit is reached; `None` when there is no room (the caller
    /// closes the new connection).
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut table = self.lock();
        let full = |t: &Table| {
            t.open.len() >= self.limits.max_connections
                || t.unauthenticated >= self.limits.max_unauthenticated()
        };
        while full(&table) {
            let victim = table
                .open
                .values()
                .filter(|c| !c.is_authenticated() && c.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|c| (c.last_active_ns.load(Ordering::Acquire), c.id))
                .map(|c| c.id);
            let Some(victim) = victim.and_then(|id| table.open.remove(&id)) else {
                self.metrics.closed(CloseReason::Refused);
                return None;
            };
            table.unauthenticated -= 1;
            victim.close.cancel();
            self.metrics.closed(CloseReason::Evicted);
        }
        let id = table.next_id;
        table.next_id += 1;
        let connection = Arc::new(Connection {
            id,
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            last_active_ns: AtomicU64::new(0),
            authenticated: AtomicBool::new(false),
            close: CancellationToken::new(),
            registry: Arc::downgrade(self),
        });
        connection.touch();
        table.open.insert(id, Arc::clone(&connection));
        table.unauthenticated += 1;
        table.publish(&self.metrics);
        Some(Admitted {
            connection,
            registry: Arc::clone(self),
        })
    }

    /// Moves a connection from the unauthenticated pool to the
    /// authenticated one.
    fn authenticated(&self, id: u64) {
        let mut table = self.lock();
        if table.open.contains_key(&id) {
            table.unauthenticated -= 1;
            table.publish(&self.metrics);
        }
    }

    fn remove(&self, connection: &Connection) {
        let mut table = self.lock();
        if table.open.remove(&connection.id).is_some() {
            if !connection.is_authenticated() {
                table.unauthenticated -= 1;
            }
            table.publish(&self.metrics);
        }
    }
}

/// One open connection, as its requests see it (in their extensions, as
/// [`ConnectionHandle`]).
#[derive(Debug)]
pub(crate) struct Connection {
    id: u64,
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Nanoseconds after `epoch` of the last request start or end (or the
    /// accept).
    last_active_ns: AtomicU64,
    authenticated: AtomicBool,
    /// Cancelled when the registry wants the connection closed.
    close: CancellationToken,
    registry: Weak<Connections>,
}

impl Connection {
    fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Acquire)
    }

    fn touch(&self) {
        let ns = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_active_ns.fetch_max(ns, Ordering::AcqRel);
    }

    fn last_active(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.last_active_ns.load(Ordering::Acquire))
    }

    /// Notes that a request on this connection presented a valid token.
    pub(crate) fn note_authenticated(&self) {
        if !self.authenticated.swap(true, Ordering::AcqRel)
            && let Some(registry) = self.registry.upgrade()
        {
            registry.authenticated(self.id);
        }
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub(crate) fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(Arc::clone(self))
    }
}

/// A request in flight on its connection; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InFlight {
    /// `body`, with this request in flight until the body is finished or
    /// dropped (a response that streams keeps its connection busy).
    pub(crate) fn hold_for(self, body: Body) -> Body {
        Body::new(body.map_frame(move |frame| {
            let _in_flight = &self;
            frame
        }))
    }
}

/// The connection a request came on, in the request's extensions.
#[derive(Clone, Debug)]
pub struct ConnectionHandle(pub(crate) Arc<Connection>);

/// Marks the connection of a request whose token checked out as
/// authenticated (see the module doc); a request without a connection (a
/// service called directly, in tests) is left alone.
pub fn note_authenticated(extensions: &http::Extensions) {
    if let Some(handle) = extensions.get::<ConnectionHandle>() {
        handle.0.note_authenticated();
    }
}

/// A registered connection; dropping it unregisters it.
#[derive(Debug)]
pub(crate) struct Admitted {
    connection: Arc<Connection>,
    registry: Arc<Connections>,
}

/// What the connection's task should do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Keep serving; look again at this instant.
    KeepUntil(Instant),
    /// Close the connection for this reason.
    Close(CloseReason),
}

impl Admitted {
    pub(crate) fn handle(&self) -> ConnectionHandle {
        ConnectionHandle(Arc::clone(&self.connection))
    }

    /// Resolves when the registry wants this connection closed (evicted).
    pub(crate) async fn evicted(&self) {
        self.connection.close.cancelled().await;
    }

    /// Whether the connection has outlived its timeout at `now`, and if not,
    /// when to look again.
    pub(crate) fn verdict(&self, now: Instant) -> Verdict {
        let c = &self.connection;
        let limits = &self.registry.limits;
        if !c.is_authenticated() {
            let deadline = c.last_active() + limits.unauthenticated_timeout;
            return if now >= deadline {
                Verdict::Close(CloseReason::Unauthenticated)
            } else {
                Verdict::KeepUntil(deadline)
            };
        }
        if c.in_flight.load(Ordering::Acquire) > 0 {
            return Verdict::KeepUntil(now + limits.idle_timeout);
        }
        let deadline = c.last_active() + limits.idle_timeout;
        if now >= deadline {
            Verdict::Close(CloseReason::Idle)
        } else {
            Verdict::KeepUntil(deadline)
        }
    }

    /// Whether no request is in flight on the connection.
    pub(crate) fn is_idle(&self) -> bool {
        self.connection.in_flight.load(Ordering::Acquire) == 0
    }

    /// Counts a close the connection's task decided on (a timeout).
    pub(crate) fn closing(&self, reason: CloseReason) {
        self.registry.metrics.closed(reason);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.registry.remove(&self.connection);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max: usize, reserved: usize) -> Arc<Connections> {
        Connections::new(
            ConnectionLimits {
                max_connections: max,
                reserved,
                unauthenticated_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(300),
            },
            Arc::default(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn idle_strangers_make_room_and_the_reserve_stays_free() {
        let connections = registry(4, 2);
        let agent = connections.admit().unwrap();
        agent.handle().0.note_authenticated();
        tokio::time::advance(Duration::from_millis(5)).await;
        let first = connections.admit().unwrap();
        tokio::time::advance(Duration::from_millis(5)).await;
        let second = connections.admit().unwrap();
        // Two unauthenticated connections is the most (4 - 2 reserved): the
        // third evicts the one idle longest.
        tokio::time::advance(Duration::from_millis(5)).await;
        let third = connections.admit().unwrap();
        assert!(first.connection.close.is_cancelled());
        assert!(!second.connection.close.is_cancelled());
        assert!(!agent.connection.close.is_cancelled());
        // A stranger busy with a request is not evicted: with both
        // unauthenticated slots busy, a new connection is refused.
        let _busy2 = second.connection.begin_request();
        let _busy3 = third.connection.begin_request();
        assert!(connections.admit().is_none());
        // An authenticated connection frees its unauthenticated slot.
        third.handle().0.note_authenticated();
        let fourth = connections.admit().unwrap();
        let busy4 = fourth.connection.begin_request();
        // Now 4 are open: the total limit, and nothing idle to evict.
        assert!(connections.admit().is_none());
        drop(busy4);
        drop(fourth);
        assert!(connections.admit().is_some());
        let metrics = {
            let mut registry = Registry::default();
            connections.metrics.register(&mut registry);
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text
        };
        assert!(
            metrics.contains("connections_closed_by_server_total{reason=\"evicted\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("connections_closed_by_server_total{reason=\"refused\"} 2"),
            "{metrics}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unauthenticated_connections_time_out_and_authenticated_ones_idle_out() {
        let connections = registry(8, 2);
        let stranger = connections.admit().unwrap();
        let start = Instant::now();
        assert_eq!(
            stranger.verdict(start),
            Verdict::KeepUntil(start + Duration::from_secs(10))
        );
        // A request in flight does not keep a stranger past its timeout.
        let request = stranger.connection.begin_request();
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            stranger.verdict(Instant::now()),
            Verdict::Close(CloseReason::Unauthenticated)
        );
        drop(request);

        let agent = connections.admit().unwrap();
        agent.handle().0.note_authenticated();
        let request = agent.connection.begin_request();
        tokio::time::advance(Duration::from_secs(3600)).await;
        // Busy: kept, however long the request takes.
        assert!(matches!(
            agent.verdict(Instant::now()),
            Verdict::KeepUntil(_)
        ));
        drop(request);
        let done = Instant::now();
        assert_eq!(
            agent.verdict(done),
            Verdict::KeepUntil(done + Duration::from_secs(300))
        );
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(
            agent.verdict(Instant::now()),
            Verdict::Close(CloseReason::Idle)
        );
    }

    #[tokio::test]
    async fn a_streaming_body_keeps_its_request_in_flight() {
        let connections = registry(8, 2);
        let admitted = connections.admit().unwrap();
        let body = admitted
            .connection
            .begin_request()
            .hold_for(Body::from("hello"));
        assert_eq!(admitted.connection.in_flight.load(Ordering::Acquire), 1);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
        assert_eq!(admitted.connection.in_flight.load(Ordering::Acquire), 0);
    }
}
