//! The sandbox side of Warden: what a sandbox tool links to hand its audit
//! records (one per allow/deny decision) to the workspace agent.
//!
//! It speaks the boundary socket protocol of the reference clients (tag-2
//! frames of at most 32768 bytes, one UUIDv4 session id per run, sequence
//! numbers from 0, drop counts in status frames) and does better where the
//! reference loses records:
//!
//! - **It drains on exit.** [`Auditor::close`] (or dropping the auditor)
//!   delivers what is still queued within a deadline and returns a
//!   [`Summary`] that accounts for every sequence number: delivered,
//!   dropped, refused by the agent, or undelivered.
//! - **It never builds a frame it cannot send.** Batches are cut by count,
//!   by time and by size (before the frame would pass 32768 bytes); a single
//!   record too large for any frame is refused with
//!   [`RecordError::TooLarge`] and blocks nothing.
//! - **It knows what arrived.** With a Warden agent it asks for
//!   acknowledgements (tag `0x40`; the agent answers `0x41`, then one `0x42`
//!   per frame once it is durable in its spool), keeps every frame until it
//!   is confirmed and sends unconfirmed frames again after a reconnect (the
//!   control plane deduplicates by session and sequence number). A reference
//!   agent closes the connection on that request; the client then carries
//!   on without acknowledgements and says so in the summary.
//! - **It survives agent restarts**: it redials with exponential backoff
//!   when the socket is missing or the connection drops, keeping its batches.
//! - **It tells the control plane how the session ended**: the closing
//!   status frame carries the last sequence number it assigned
//!   (`final_sequence_number`, -1 for none), so tail loss is distinguishable
//!   from a session that simply stopped.
//! - **It says under which policy records were decided** when the sandbox
//!   has one ([`Config::policy`], set by `warden boundary`): the policy
//!   digest goes on every logs frame, and the policy text once, in a status
//!   frame at the start of the session.
//!
//! Recording never blocks on the network: records go into a bounded queue
//! that one background task drains. When the queue is full a record is
//! dropped and counted ([`Overflow::Drop`], the default) or the caller waits
//! up to a deadline ([`Overflow::Block`]). Dropped records keep their
//! sequence numbers, so the control plane sees the gap and the reported
//! drop that explains it. Sequence numbers are `int32` on the wire: a
//! session holds 2^31 records and then refuses more rather than wrap (see
//! [`sequence`]).
//!
//! Use [`Auditor`] from async code and [`BlockingAuditor`] (which runs its
//! own small runtime) from anything else.
//!
//! # Example: auditing an HTTP decision point
//!
//! ```
//! use std::time::Duration;
//! use warden_client::{Auditor, Config, Record};
//!
//! /// The sandbox's HTTP gate: allow listed hosts, deny the rest, and leave
//! /// an audit record either way.
//! struct Gate {
//!     allowed_hosts: Vec<String>,
//!     auditor: Auditor,
//! }
//!
//! impl Gate {
//!     fn check(&self, method: &str, url: &str) -> bool {
//!         let host = url
//!             .split_once("://")
//!             .and_then(|(_, rest)| rest.split(['/', ':', '?']).next())
//!             .unwrap_or_default();
//!         let rule = self.allowed_hosts.iter().find(|h| h.as_str() == host);
//!         let record = match rule {
//!             Some(host) => Record::allow(method, url, format!("domain={host}")),
//!             None => Record::deny(method, url),
//!         };
//!         // Never waits on the request path: a full queue drops and counts.
//!         if let Err(error) = self.auditor.try_record(record) {
//!             eprintln!("audit: {error}");
//!         }
//!         rule.is_some()
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let socket = dir.path().join("agent.sock");
//! // In a workspace, `Config::from_env()` finds the agent's socket.
//! let auditor = Auditor::start(Config::new(&socket))?;
//! let gate = Gate {
//!     allowed_hosts: vec!["github.com".into()],
//!     auditor: auditor.clone(),
//! };
//! assert!(gate.check("GET", "https://github.com/coder/coder"));
//! assert!(!gate.check("POST", "https://evil.example/upload?x=1"));
//!
//! // Before exiting: deliver what is queued, then look at what happened.
//! // (No agent listens in this example, so both records stay undelivered.)
//! let summary = auditor.close_within(Duration::from_millis(200)).await?;
//! eprintln!("audit: {summary}");
//! assert_eq!(summary.assigned, 2);
//! assert!(!summary.is_complete());
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs, unreachable_pub)]

mod auditor;
mod batch;
mod blocking;
mod config;
mod error;
pub mod jsonl;
mod link;
mod outbox;
mod record;
pub mod sequence;
mod shared;
mod summary;
mod worker;

pub use auditor::Auditor;
pub use blocking::BlockingAuditor;
pub use config::{
    AckPolicy, Config, MAX_PROCESS_NAME_LEN, Overflow, Policy, SOCKET_ENV_VARS,
    socket_path_from_env,
};
pub use error::{CloseError, ConfigError, RecordError};
pub use record::{Decision, Record};
pub use sequence::{SEQUENCE_LIMIT, SequenceSet};
pub use summary::{AckMode, AgentRefusals, DropCounts, FinalStatus, Summary};
