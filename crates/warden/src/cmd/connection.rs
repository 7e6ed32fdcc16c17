//! What the operator commands that talk to a server's HTTP API (`warden
//! workspace`, `warden logs`) share: which server and admin token (flags,
//! environment, or the server's data dir), and a small runtime to run them
//! on. Their failures and exit codes are [`super::failure`]'s.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use warden_api::ApiClient;
use warden_api::client::{ADMIN_TOKEN_FILE, SERVER_URL_FILE};

use super::failure::{self, Failure};

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
    pub fn client(&self) -> Result<ApiClient, Failure> {
        let url = match &self.url {
            Some(url) => url.clone(),
            None => read_setting(&self.data_dir, SERVER_URL_FILE).ok_or_else(|| {
                // A server's data dir whose server is not running (it
                // removes server-url when it stops): say how to start it.
                if self.data_dir.join("warden.db").exists() {
                    let dir = self.data_dir.display();
                    return Failure::runtime_msg(format_args!(
                        "the server of {dir} is not running (no server-url there): start it with `warden server --data-dir {dir}` (or `warden dev --data-dir {dir}` for a dev setup), then run this again; `warden verify --data-dir {dir}` reads the stopped store directly"
                    ));
                }
                Failure::usage_msg(format_args!(
                    "no server url: pass --url, set WARDEN_URL, or point --data-dir at the server's data dir (no {} there)",
                    self.data_dir.join(SERVER_URL_FILE).display()
                ))
            })?,
        };
        let token = match &self.token {
            Some(token) => token.clone(),
            None => read_setting(&self.data_dir, ADMIN_TOKEN_FILE).ok_or_else(|| {
                Failure::usage_msg(format_args!(
                    "no admin token: pass --token, set WARDEN_ADMIN_TOKEN, or point --data-dir at the server's data dir (no {} there)",
                    self.data_dir.join(ADMIN_TOKEN_FILE).display()
                ))
            })?,
        };
        Ok(ApiClient::new(&url, token, self.ca_cert.as_deref())?)
    }
}

/// The trimmed content of a one-line file, if it exists and is not empty.
fn read_setting(dir: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// One JSON line of `value`, with characters that would act on a terminal
/// escaped ([`escape_json`](crate::cmd::table::escape_json)).
pub fn to_json(value: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string(value)
        .map(|text| crate::cmd::table::escape_json(&text).into_owned())
        .map_err(|e| Failure::runtime(anyhow::Error::new(e).context("encoding json")))
}

/// A listing on stdout: one JSON line per item with `json`, else the
/// table `table` makes of them.
pub fn print_listing<T: serde::Serialize>(
    items: &[T],
    json: bool,
    table: impl FnOnce(&[T]) -> String,
) -> Result<(), Failure> {
    if json {
        for item in items {
            println!("{}", to_json(item)?);
        }
    } else {
        print!("{}", table(items));
    }
    Ok(())
}

/// Runs a command's async body on a small runtime; prints a failure as
/// `warden NAME: message` and turns it into the exit code.
pub fn run(name: &str, body: impl Future<Output = Result<(), Failure>>) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(anyhow::Error::new(e).context("starting the async runtime")))
        .and_then(|runtime| runtime.block_on(body));
    failure::exit(name, result)
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
        assert_eq!(connection(None).client().err().unwrap().code(), 2);
        std::fs::write(dir.path().join(SERVER_URL_FILE), "http://127.0.0.1:9\n").unwrap();
        let missing_token = connection(None).client().err().unwrap();
        assert_eq!(missing_token.code(), 2);
        assert!(
            missing_token.message().contains("admin token"),
            "{}",
            missing_token.message()
        );
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "t0ken\n").unwrap();
        assert!(connection(None).client().is_ok());
        assert_eq!(
            connection(Some("ftp://x")).client().err().unwrap().code(),
            2
        );
    }
}
