//! The control plane's HTTP API as its users see it: the JSON bodies and
//! query parameters of the workspace admin API ([`workspaces`]) and of the
//! record query API ([`records`]), shared by the server's handlers and its
//! clients, and the client itself ([`client::ApiClient`]) that the `warden`
//! commands use. The server (`warden-server`) serves these types and
//! describes them in its OpenAPI document; this crate knows nothing of the
//! store.
//!
//! Also here, because both sides read and write them the same way: the
//! forms time takes in text ([`time`]) and the client's TLS ([`tls`]).

#![warn(missing_docs, unreachable_pub)]

pub mod access;
pub mod agent_firewall;
pub mod client;
pub mod records;
pub mod time;
pub mod tls;
pub mod workspaces;

pub use client::{ApiClient, ClientError};
