//! The contract every other Warden crate builds on.
//!
//! - [`wire`]: the protobuf messages, generated from `proto/` (the boundary
//!   socket messages, Warden's acknowledgement extension and the agent API).
//! - [`codec`]: the boundary socket framing (`tag | 24-bit length | payload`)
//!   with an async decoder for the agent and an encoder for clients.
//! - [`domain`]: validated types the rest of the code works with, and the
//!   only place wire messages are turned into them.
//! - [`api`]: the agent API's version and metadata conventions.
//! - [`scan`]: validating a client's records and reading what the agent
//!   needs from them without decoding them (the agent forwards the bytes).
//! - [`socket`]: the boundary socket's stream, registered with the reactor
//!   for readability only (the peer's reads do not wake this end).
//! - [`quote`]: Go's `%q` quoting for text that came from outside, used
//!   wherever such text is printed (boundary lines, agent warnings).

#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod codec;
pub mod domain;
pub mod exposition;
pub mod quote;
pub mod scan;
pub mod socket;
pub mod wire;
