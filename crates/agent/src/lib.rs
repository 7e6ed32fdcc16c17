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
