//! The contract every other Warden crate builds on.
//!
//! - [`wire`]: the protobuf messages, generated from `proto/` (the boundary
//!   socket messages, Warden's acknowledgement extension and the agent API).
//! - [`codec`]: the boundary socket framing (`tag | 24-bit length | payload`)
//!   with an async decoder for the agent and an encoder for clients.
//! - [`domain`]: validated types the rest of the code works with, and the
//!   only place wire messages are turned into them.
//! - [`api`]: the agent API's version and metadata conventions.

pub mod api;
pub mod codec;
pub mod domain;
pub mod wire;
