//! How an auditor batches, queues, reconnects and closes; validated before
//! anything starts.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ConfigError;

pub use warden_proto::domain::Policy;

/// The variables the agent sets for every command it starts, in the order
/// they are read.
pub const SOCKET_ENV_VARS: [&str; 2] = [
    "CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH",
    "CODER_BOUNDARY_LOG_SOCKET",
];

/// Longest `confined_process_name` accepted; it is repeated in every frame.
pub const MAX_PROCESS_NAME_LEN: usize = 1024;

/// What a full queue does to a new record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the record and count it (the reference client's behaviour); the
    /// caller never waits.
    Drop,
    /// Wait for room, at most `timeout` (`None`: as long as it takes), then
    /// drop and count.
    Block {
        /// The longest wait; `None`: as long as it takes.
        timeout: Option<Duration>,
    },
}

/// Whether to ask the agent for end-to-end acknowledgements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckPolicy {
    /// Ask; fall back to plain mode when the agent does not support them.
    Auto,
    /// Never ask (plain reference protocol).
    Off,
}

/// Auditor settings. Start from [`Config::new`] and change what you need.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The agent's boundary log socket.
    pub socket_path: PathBuf,
    /// A batch is sent when it holds this many records (reference: 10).
    pub batch_max_records: usize,
    /// ... or this long after its first record (reference: 5 s).
    pub batch_interval: Duration,
    /// Records waiting for the background task (the caller-facing queue).
    pub queue_capacity: usize,
    /// Records the background task holds (open batch plus frames not yet
    /// written or confirmed); when it is full the task stops taking from the
    /// queue, so a long outage ends in queue drops (or waits, in block mode).
    pub buffer_records: usize,
    /// What `record()` does when the queue is full.
    pub overflow: Overflow,
    /// Whether to ask the agent to confirm records durable.
    pub acknowledgements: AckPolicy,
    /// How long `close()` (and dropping the auditor) may take to deliver
    /// what is left.
    pub close_timeout: Duration,
    /// First delay before redialing the agent; doubles up to `reconnect_max`
    /// (each delay plus up to as much random jitter, so that many clients do
    /// not redial a restarted agent in step).
    pub reconnect_min: Duration,
    /// The longest delay between redials.
    pub reconnect_max: Duration,
    /// Sent with every batch; empty for none.
    pub confined_process_name: String,
    /// The policy the session's decisions are made under (`warden
    /// boundary`): its digest goes on every logs frame, and the digest with
    /// the policy text in one status frame at the start of the session.
    /// The digest must be a lower-case hex SHA-256 (64 characters).
    pub policy: Option<Policy>,
}

impl Config {
    /// Reference-like defaults for `socket_path`: batches of 10 records or
    /// 5 s, drop when the queue is full, acknowledgements when the agent
    /// supports them, 5 s to drain on close.
    pub fn new(socket_path: impl Into<PathBuf>) -> Config {
        Config {
            socket_path: socket_path.into(),
            batch_max_records: 10,
            batch_interval: Duration::from_secs(5),
            queue_capacity: 1024,
            buffer_records: 8192,
            overflow: Overflow::Drop,
            acknowledgements: AckPolicy::Auto,
            close_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            confined_process_name: String::new(),
            policy: None,
        }
    }

    /// [`Config::new`] with the socket the agent advertises in the
    /// environment ([`SOCKET_ENV_VARS`]).
    pub fn from_env() -> Result<Config, ConfigError> {
        socket_path_from_env()
            .map(Config::new)
            .ok_or(ConfigError::NoSocket)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let at_least = |field, value: u64, min| {
            if value < min {
                Err(ConfigError::TooSmall { field, min })
            } else {
                Ok(())
            }
        };
        at_least("batch_max_records", self.batch_max_records as u64, 1)?;
        at_least("queue_capacity", self.queue_capacity as u64, 1)?;
        at_least(
            "batch_interval (ms)",
            self.batch_interval.as_millis() as u64,
            1,
        )?;
        at_least(
            "reconnect_min (ms)",
            self.reconnect_min.as_millis() as u64,
            1,
        )?;
        if self.buffer_records < self.batch_max_records {
            return Err(ConfigError::BufferBelowBatch {
                buffer: self.buffer_records,
                batch: self.batch_max_records,
            });
        }
        if self.reconnect_min > self.reconnect_max {
            return Err(ConfigError::ReconnectRange {
                min: self.reconnect_min,
                max: self.reconnect_max,
            });
        }
        if self.confined_process_name.len() > MAX_PROCESS_NAME_LEN {
            return Err(ConfigError::ProcessNameTooLong {
                len: self.confined_process_name.len(),
                max: MAX_PROCESS_NAME_LEN,
            });
        }
        if let Some(policy) = &self.policy {
            let digest = &policy.digest;
            let is_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
            if digest.len() != 64 || !digest.chars().all(is_hex) {
                return Err(ConfigError::PolicyDigest {
                    digest: digest.chars().take(80).collect(),
                });
            }
        }
        Ok(())
    }
}

/// The socket path the agent advertises: the first of [`SOCKET_ENV_VARS`]
/// that is set and not empty.
pub fn socket_path_from_env() -> Option<PathBuf> {
    socket_path_from(|name| std::env::var_os(name))
}

fn socket_path_from(get: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    SOCKET_ENV_VARS
        .iter()
        .filter_map(|name| get(name))
        .find(|value| !value.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_variable_wins_and_empty_values_do_not_count() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            socket_path_from(env(&[
                ("CODER_BOUNDARY_LOG_SOCKET", "/b"),
                ("CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH", "/a"),
            ])),
            Some(PathBuf::from("/a"))
        );
        assert_eq!(
            socket_path_from(env(&[
                ("CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH", ""),
                ("CODER_BOUNDARY_LOG_SOCKET", "/b"),
            ])),
            Some(PathBuf::from("/b"))
        );
        assert_eq!(socket_path_from(env(&[])), None);
    }

    #[test]
    fn impossible_settings_are_refused() {
        let ok = Config::new("/s");
        assert!(ok.validate().is_ok());
        let mut c = ok.clone();
        c.batch_max_records = 0;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TooSmall {
                field: "batch_max_records",
                min: 1
            })
        ));
        let mut c = ok.clone();
        c.buffer_records = 5;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BufferBelowBatch { .. })
        ));
        let mut c = ok.clone();
        c.reconnect_min = Duration::from_secs(10);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ReconnectRange { .. })
        ));
        let mut c = ok.clone();
        c.confined_process_name = "x".repeat(MAX_PROCESS_NAME_LEN + 1);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ProcessNameTooLong { .. })
        ));
        for digest in ["", "abc", &"A".repeat(64), &"0".repeat(65)] {
            let mut c = ok.clone();
            c.policy = Some(Policy {
                digest: digest.to_owned(),
                text: String::new(),
            });
            assert!(
                matches!(c.validate(), Err(ConfigError::PolicyDigest { .. })),
                "{digest:?}"
            );
        }
        let mut c = ok;
        c.policy = Some(Policy {
            digest: "0123456789abcdef".repeat(4),
            text: "allow domain=a.io".into(),
        });
        assert!(c.validate().is_ok(), "{:?}", c.validate());
    }
}
