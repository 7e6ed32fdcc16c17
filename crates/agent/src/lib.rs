//! The workspace agent: the boundary log socket, the crash-safe spool and
//! the acknowledged forwarder, and the workspace's commands.
//!
//! ```text
//! clients ──► socket (decode, stamp peer) ──► spool (fsync) ──► forwarder ══► control plane
//!              └─ acknowledged clients get one FrameAck per frame once it is durable
//! ```
//!
//! Delivery contract: a record is accepted once it is durable in the spool;
//! a spooled batch is deleted only after the control plane confirmed
//! committing it, and re-sent with the same batch id otherwise (after a lost
//! acknowledgement, a reconnect or a restart). Every loss the agent sees is
//! counted by reason and reported to the control plane ([`drops`]).
//!
//! Drop reasons the agent reports (`Batch.agent_drops`, and the metric
//! `agent_boundary_log_proxy_batches_dropped_total{reason}`):
//! `unknown_tag`, `frame_too_long`, `truncated_frame`, `read_error` (the
//! connection is closed), `malformed_frame`, `empty_envelope`,
//! `unexpected_frame` (skipped), `peer_not_allowed`, `connection_limit`
//! (refused connections), `spool_full` (drop_oldest), `spool_error` (the
//! spool could not write), `rejected_by_control_plane` (kept aside in
//! `<data-dir>/rejected/`). Records without a request are not among them:
//! they are forwarded as sent and the control plane rejects and counts them,
//! so they are counted once; the agent only reports their number to an
//! acknowledged client and in its `logs_dropped{reason="no_request"}` metric.
//!
//! Trust boundary: the socket is mode 0600 (0660 with a group), but a
//! sandboxed process usually runs as the agent's user and can write records
//! anyway. So every batch carries the peer's uid, gid and pid (SO_PEERCRED,
//! vouched for by the kernel) and its `comm` and executable (from /proc, read
//! right after accepting), and an allowlist of executables can refuse other
//! peers. This makes every record traceable to the process that wrote it
//! and keeps other programs out; it does not stop an allowed program from
//! being made to write false records (for example by a process that can
//! ptrace it or preload a library into it), and a pid can in principle be
//! reused between connecting and the /proc read.
//!
//! Entry point: [`run`], which the `warden agent` binary and the tests call.
//!
//! Modules: [`config`] (settings), [`control`] (gRPC client, auth, retry),
//! [`manifest`] (fetch and cache), [`socket`] (listener, peers, connections,
//! acknowledged mode), [`batching`] (frames to spooled batches), [`ingest`]
//! (the way into the spool), [`forward`] (the forwarder), [`drops`] (the
//! agent's own losses), [`commands`] (startup script and COMMAND),
//! [`metrics`] (Prometheus), [`run`] (start and shutdown order).

pub mod batching;
pub mod commands;
pub mod config;
pub mod control;
pub mod drops;
pub mod error;
pub mod forward;
pub mod ingest;
pub mod manifest;
pub mod metrics;
mod run;
pub mod socket;

pub use config::{AgentConfig, SocketConfig, Token};
pub use control::RetryPolicy;
pub use error::AgentError;
pub use run::{Events, Outcome, run};
pub use warden_spool::FullPolicy;
