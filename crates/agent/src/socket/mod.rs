//! The boundary log socket: binding it safely ([`listener`]), knowing who
//! connects ([`peer`]), accepting ([`server`]), reading each connection
//! ([`conn`]) and the acknowledged mode ([`ack`]).

pub mod ack;
pub mod conn;
pub mod listener;
pub mod peer;
pub mod server;
