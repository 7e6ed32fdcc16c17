//! How every subcommand fails: one [`Failure`] type that carries the error
//! and the exit code it calls for, and one way to print it.
//!
//! Exit codes (`docs/cli.md`): 0 success, 1 runtime failure (the server is
//! unreachable, a workspace or session named does not exist, a name is
//! already taken), 2 usage or configuration error (a bad flag value, no
//! server URL or admin token, a wrong token, input the server refuses).
//!
//! Errors keep their causes as sources (the project's error rule); the
//! message printed is the whole chain, once, on one line that ends in a
//! newline: `warden logs: cannot reach 127.0.0.1:7080: Connection refused`.

use std::fmt;
use std::process::ExitCode;

use anyhow::anyhow;
use warden_api::ClientError;

/// Exit code of a runtime failure.
pub const RUNTIME: u8 = 1;
/// Exit code of a usage or configuration error.
pub const USAGE: u8 = 2;

/// A failure and the exit code it calls for.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    /// `None`: nothing to say (already said, or the reader is gone).
    error: Option<anyhow::Error>,
}

impl Failure {
    /// A usage or configuration error (exit 2).
    pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: USAGE,
            error: Some(error.into()),
        }
    }

    /// A runtime failure (exit 1).
    pub fn runtime(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: RUNTIME,
            error: Some(error.into()),
        }
    }

    /// A usage error with only a message.
    pub fn usage_msg(message: impl fmt::Display) -> Failure {
        Failure::usage(anyhow!("{message}"))
    }

    /// A runtime failure with only a message.
    pub fn runtime_msg(message: impl fmt::Display) -> Failure {
        Failure::runtime(anyhow!("{message}"))
    }

    /// An error with the exit code the caller picked (the agent's own
    /// errors know theirs).
    pub fn with_code(code: u8, error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code,
            error: Some(error.into()),
        }
    }

    /// A runtime failure the command has already explained (exit 1, no
    /// further message).
    pub fn already_reported() -> Failure {
        Failure {
            code: RUNTIME,
            error: None,
        }
    }

    /// Whoever read our output stopped (`| head`): stop quietly, exit 0.
    pub fn reader_gone() -> Failure {
        Failure {
            code: 0,
            error: None,
        }
    }

    /// Adds what was being done to the message (`registering workspace
    /// "dev"`), keeping the exit code.
    pub fn context(self, context: impl fmt::Display + Send + Sync + 'static) -> Failure {
        Failure {
            code: self.code,
            error: self.error.map(|e| e.context(context)),
        }
    }

    /// The exit code.
    pub fn code(&self) -> u8 {
        self.code
    }

    /// The message: the whole chain of causes on one line (empty when there
    /// is nothing to say).
    pub fn message(&self) -> String {
        self.error
            .as_ref()
            .map(|e| one_line(e.as_ref()))
            .unwrap_or_default()
    }

    /// Prints `warden NAME: message` on stderr (when there is something to
    /// say) and gives the exit code.
    pub fn exit(self, name: &str) -> ExitCode {
        let message = self.message();
        if !message.is_empty() {
            eprintln!("warden {name}: {message}");
        }
        ExitCode::from(self.code)
    }
}

/// The exit code of a command's result, printing its failure.
pub fn exit(name: &str, result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(name),
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::Url { .. } | ClientError::Tls(_) => USAGE,
            // Bad input, a wrong token, or a token whose role may not do
            // this: the caller's to fix.
            ClientError::Api { status, .. } if [400, 401, 403].contains(&status.as_u16()) => USAGE,
            // Not found (404), already taken (409), the server's trouble:
            // runtime failures.
            _ => RUNTIME,
        };
        Failure::with_code(code, e)
    }
}

impl From<warden_server::ServerError> for Failure {
    fn from(e: warden_server::ServerError) -> Self {
        let code = if e.is_config() { USAGE } else { RUNTIME };
        Failure::with_code(code, e)
    }
}

impl From<warden_agent::AgentError> for Failure {
    fn from(e: warden_agent::AgentError) -> Self {
        Failure::with_code(e.exit_code(), e)
    }
}

/// An error and its causes, `: `-separated, on one line. A cause whose text
/// the message before it already shows (errors of other crates often
/// repeat their source) is left out, so nothing is said twice.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        let text = text.trim();
        if !text.is_empty() && !previous.contains(text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(text);
        }
        previous = text.to_owned();
        next = e.source();
    }
    // A message from elsewhere (a server's refusal, a file) may hold line
    // breaks or end in one: the line must stay one and end where we say.
    out.split(['\n', '\r'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the spool")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("opening the spool: {0}")]
    struct Repeats(#[source] std::io::Error);

    /// EACCES.
    fn denied() -> std::io::Error {
        std::io::Error::from_raw_os_error(13)
    }

    #[test]
    fn the_chain_is_printed_once_on_one_line() {
        let e = anyhow::Error::new(Outer(denied())).context("starting the agent");
        assert_eq!(
            Failure::runtime(e).message(),
            "starting the agent: reading the spool: Permission denied (os error 13)"
        );
        // A message that already shows its cause does not show it twice.
        let e = Repeats(denied());
        assert_eq!(
            one_line(&e),
            "opening the spool: Permission denied (os error 13)"
        );
        let e = anyhow!("refused:\nline two\r\n\n");
        assert_eq!(Failure::usage(e).message(), "refused: line two");
    }

    #[test]
    fn codes_follow_the_cli_contract() {
        let api = |status: u16| {
            Failure::from(ClientError::Api {
                status: warden_api::client::StatusCode::from_u16(status).unwrap(),
                message: "m".into(),
            })
            .code()
        };
        assert_eq!(api(400), USAGE);
        assert_eq!(api(401), USAGE);
        assert_eq!(api(404), RUNTIME);
        assert_eq!(api(409), RUNTIME);
        assert_eq!(api(503), RUNTIME);
        assert_eq!(Failure::reader_gone().code(), 0);
        assert_eq!(Failure::reader_gone().message(), "");
        assert_eq!(Failure::already_reported().code(), RUNTIME);
        let f = Failure::usage_msg("bad").context("registering");
        assert_eq!(
            (f.code(), f.message().as_str()),
            (USAGE, "registering: bad")
        );
    }
}
