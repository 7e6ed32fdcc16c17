//! The accept loop: identifies each peer, refuses peers outside the
//! allowlist and connections beyond the cap (both counted and logged), and
//! hands the rest to their own task.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use warden_proto::domain::DropReason;
use warden_proto::quote::quote;

use super::conn::{self, ConnShared};
use super::peer::{self, Allowlist};
use crate::drops::Loss;

/// The socket's accept side.
pub struct Acceptor {
    /// The bound socket.
    pub listener: UnixListener,
    /// Who may connect.
    pub allowlist: Allowlist,
    /// Connections beyond this many are refused.
    pub max_connections: usize,
    /// What every connection shares.
    pub shared: Arc<ConnShared>,
    /// Tracks connection tasks, so shutdown can wait for them.
    pub connections: TaskTracker,
}

impl Acceptor {
    /// Accepts until `stop_accepting`; connections run until they end or
    /// `stop_connections` fires.
    pub async fn run(self, stop_accepting: CancellationToken, stop_connections: CancellationToken) {
        let drops = self.shared.ingest.drops().clone();
        loop {
            let accepted = tokio::select! {
                () = stop_accepting.cancelled() => return,
                accepted = self.listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little
                    // rather than spin, then carry on.
                    tracing::error!(error = %e, "accepting a boundary log connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let peer = match peer::identify(&stream) {
                Ok(peer) => peer,
                Err(e) => {
                    tracing::warn!(error = %e, "refusing a connection whose peer cannot be identified");
                    continue;
                }
            };
            if !self.allowlist.allows(&peer) {
                tracing::warn!(
                    pid = peer.pid, uid = peer.uid, comm = %quote(&peer.comm), exe = %quote(&peer.exe),
                    "refusing a boundary log connection from an executable outside the allowlist"
                );
                drops.record(DropReason::PeerNotAllowed, Loss::frames(Some(&peer), 1));
                continue;
            }
            if self.connections.len() >= self.max_connections {
                tracing::warn!(
                    pid = peer.pid, uid = peer.uid, exe = %quote(&peer.exe),
                    limit = self.max_connections,
                    "refusing a boundary log connection: too many connections"
                );
                drops.record(DropReason::ConnectionLimit, Loss::frames(Some(&peer), 1));
                continue;
            }
            self.connections.spawn(conn::serve(
                stream,
                peer,
                self.shared.clone(),
                stop_connections.clone(),
            ));
        }
    }
}
