//! The workspace agent: the boundary log socket, the crash-safe spool and
//! the acknowledged forwarder, and the workspace's commands.
//!
//! ```text
//! clients ──► socket (read once, stamp peer) ──► spool (fsync) ──► forwarder ══► control plane
//!              └─ acknowledged clients get one FrameAck per frame once it is durable
//! ```
//!
//! Delivery contract: a record is accepted once it is durable in the spool;
//! a spooled batch is deleted only after the control plane confirmed
//! committing it, and re-sent with the same batch id otherwise (after a lost
//! acknowledgement, a reconnect or a restart). Every loss the agent sees is
//! counted by reason and reported to the control plane ([`drops`]),
//! attributed to its session and sequence numbers when they are known; what
//! the spool's drop_oldest policy drops is kept in the spool's drop ledger
//! until it is reported ([`forward::report_drops`]), so that for every
//! session the records stored and the records reported lost add up to the
//! records sent, under every policy.
//!
//! A frame is read once ([`warden_proto::scan`]) and spooled as the bytes
//! the client sent behind a small header ([`entry`]); the forwarder sends
//! them as they are. The drop reasons are `warden_proto::domain::DropReason`
//! (the metric `agent_boundary_log_proxy_batches_dropped_total{reason}` and
//! `Batch.agent_drops` use their names). Records without a request are not
//! among the agent's drops: they are forwarded as sent and the control plane
//! rejects and counts them, so they are counted once; the agent only reports
//! their number to an acknowledged client and in its
//! `logs_dropped{reason="no_request"}` metric.
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
//! reused between connecting and the /proc read. The agent's token lets its
//! holder write anything as this workspace, so it comes from a private file
//! ([`Token::from_file`]), is never given to the commands the agent starts,
//! and the agent process is made non-dumpable ([`hardening`]).
//!
//! Entry point: [`run`], which the `warden agent` binary and the tests call.
//!
//! Modules: [`config`] (settings), [`token`] (the agent token), [`control`]
//! (gRPC client, auth, retry), [`manifest`] (fetch and cache), [`socket`]
//! (listener, peers, reading frames, connections, acknowledged mode),
//! [`entry`] (the spool entry format), [`batching`] (splitting frames too
//! large for one call), [`ingest`] (the way into the spool), [`forward`]
//! (the forwarder and the drop ledger's reporter), [`drops`] (the agent's
//! own losses), [`chain`] (errors in log lines), [`files`] (private files
//! and the data dir), [`hardening`]
//! (non-dumpable), [`commands`] (startup script and COMMAND), [`metrics`]
//! (Prometheus), [`run`] (start and shutdown order).

#![warn(missing_docs, unreachable_pub)]

pub mod batching;
pub mod chain;
pub mod commands;
pub mod config;
pub mod control;
pub mod drops;
pub mod entry;
pub mod error;
pub mod files;
pub mod forward;
pub mod hardening;
pub mod ingest;
pub mod manifest;
pub mod metrics;
mod run;
pub mod socket;
pub mod token;

pub use config::{AgentConfig, SocketConfig};
pub use control::RetryPolicy;
pub use error::AgentError;
pub use run::{Events, Outcome, run};
pub use token::{Token, TokenFileError};
pub use warden_spool::FullPolicy;
