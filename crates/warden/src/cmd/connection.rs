//! What the operator commands that talk to a server's HTTP API (`warden
//! workspace`, `warden logs`) share: which server and admin token (flags,
//! environment, or the server's data dir), and how their failures become
//! messages and exit codes.
//!
//! Exit codes: 0 success, 1 runtime failure (server unreachable, refused),
//! 2 usage or configuration (no URL or token, bad input, wrong token).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use warden_server::admin_client::{AdminClient, ClientError};
use warden_server::admin_token::ADMIN_TOKEN_FILE;

use super::server::SERVER_URL_FILE;

/// Which server, with which admin token.
#[derive(clap::Args, Debug)]
pub struct Connection {
    /// The server's URL (default: <data-dir>/server-url).
    #[arg(long, env = "WARDEN_URL")]
    pub url: Option<String>,
    /// The admin token (default: <data-dir>/admin-token).
    #[arg(long, env = "WARDEN_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The server's data dir, to read server-url and admin-token from.
    #[arg(long, env = "WARDEN_DATA_DIR", default_value = "./warden-data")]
    pub data_dir: PathBuf,
    /// PEM CA certificate to trust for an https:// URL (default: system roots).
    #[arg(long, env = "WARDEN_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

impl Connection {
    /// The client for the server and token the flags (or the data dir) name.
    pub fn client(&self) -> Result<AdminClient, Failure> {
        let url = match &self.url {
            Some(url) => url.clone(),
            None => read_setting(&self.data_dir, SERVER_URL_FILE).ok_or_else(|| {
                Failure::usage(format!(
                    "no server url: pass --url, set WARDEN_URL, or point --data-dir at the server's data dir (no {} there)",
                    self.data_dir.join(SERVER_URL_FILE).display()
                ))
            })?,
        };
        let token = match &self.token {
            Some(token) => token.clone(),
            None => read_setting(&self.data_dir, ADMIN_TOKEN_FILE).ok_or_else(|| {
                Failure::usage(format!(
                    "no admin token: pass --token, set WARDEN_ADMIN_TOKEN, or point --data-dir at the server's data dir (no {} there)",
                    self.data_dir.join(ADMIN_TOKEN_FILE).display()
                ))
            })?,
        };
        Ok(AdminClient::new(&url, token, self.ca_cert.as_deref())?)
    }
}

/// The trimmed content of a one-line file, if it exists and is not empty.
fn read_setting(dir: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// A failure and its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// A usage or configuration error (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// A runtime failure (exit 1).
    pub fn runtime(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }

    /// Whoever read our output stopped (`| head`): stop quietly, exit 0.
    pub fn reader_gone() -> Failure {
        Failure {
            code: 0,
            message: String::new(),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::Url { .. } | ClientError::Tls(_) => 2,
            // Bad input or a wrong admin token: the caller's to fix.
            ClientError::Api { status, .. } if *status == 400 || *status == 401 => 2,
            _ => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

/// One JSON line of `value`.
pub fn to_json(value: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure::runtime(format!("encoding json: {e}")))
}

/// Runs a command's async body on a small runtime; prints a failure as
/// `warden NAME: message` and turns it into the exit code.
pub fn run(name: &str, body: impl Future<Output = Result<(), Failure>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("warden {name}: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(body) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("warden {name}: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_and_token_come_from_the_data_dir_unless_given() {
        let dir = tempfile::tempdir().unwrap();
        let connection = |url: Option<&str>| Connection {
            url: url.map(str::to_owned),
            token: None,
            data_dir: dir.path().to_owned(),
            ca_cert: None,
        };
        assert_eq!(connection(None).client().err().unwrap().code, 2);
        std::fs::write(dir.path().join(SERVER_URL_FILE), "http://127.0.0.1:9\n").unwrap();
        let missing_token = connection(None).client().err().unwrap();
        assert_eq!(missing_token.code, 2);
        assert!(
            missing_token.message.contains("admin token"),
            "{}",
            missing_token.message
        );
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "t0ken\n").unwrap();
        assert!(connection(None).client().is_ok());
        assert_eq!(connection(Some("ftp://x")).client().err().unwrap().code, 2);
    }
}
