//! The boundary log socket: binding it safely ([`listener`]), knowing who
//! connects ([`peer`]), accepting ([`server`]), reading frames as their
//! bytes arrive within a shared memory budget ([`reader`], [`budget`]),
//! serving each connection ([`conn`]) and the acknowledged mode ([`ack`]).

pub mod ack;
pub mod budget;
pub mod conn;
pub mod listener;
pub mod peer;
pub mod reader;
pub mod server;
