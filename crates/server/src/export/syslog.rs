//! Syslog: RFC 5424 messages, octet-counted (RFC 6587 section 3.4.1) over
//! TCP, or over TLS (RFC 5425) for a `tls://` target.
//!
//! One message per record:
//! `<PRI>1 TIME HOST warden PID boundary [warden@32473 id="..." ...] MSG`.
//! PRI is facility 13 (log audit) with severity 6 (informational) for an
//! allowed request and 4 (warning) for a denied one. The structured data
//! carries every field, the record id included; MSG is a readable summary.
//! Values are written in Go's quoting without the outer quotes (control
//! characters as `\n`, `\x1b` and so on), then escaped as RFC 5424 wants
//! (`"`, `\` and `]` get a backslash), so no value can hold a control
//! character, end the structured data, or start another message; the
//! octet count frames each message whatever it holds.
//!
//! TCP has no acknowledgements: a batch counts as delivered once it is
//! written to the socket. Before each batch the connection is checked for
//! an end the collector signalled (it closed or restarted), so a batch is
//! not written into a connection already known to be dead; records written
//! just before the collector dies can still be lost, which only a protocol
//! with acknowledgements (RELP) would avoid.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use warden_proto::domain::Decision;
use warden_proto::quote::quote;

use super::SinkError;
use super::record::ExportRecord;

/// How long one batch may take to write.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The structured data's id: Warden has no private enterprise number of its
/// own, so it uses the one RFC 5612 sets aside for documentation.
pub const SD_ID: &str = "warden@32473";
/// Facility 13: log audit.
const FACILITY: u8 = 13;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// A syslog collector and the connection to it.
pub struct SyslogClient {
    host: String,
    port: u16,
    tls: Option<TlsConnector>,
    hostname: String,
    conn: Option<Pin<Box<dyn Stream>>>,
}

impl std::fmt::Debug for SyslogClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogClient")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl SyslogClient {
    /// A client for `tcp://HOST:PORT` or `tls://HOST:PORT` (trusting `ca`,
    /// or the system's roots without it), not connected yet.
    pub fn new(url: &str, ca: Option<&Path>) -> Result<SyslogClient, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("tcp://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("tls://") {
            (true, rest)
        } else {
            return Err(format!(
                "{url:?}: a syslog target is tcp://HOST:PORT or tls://HOST:PORT"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("{url:?}: the target needs a host and a port"))?;
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let tls = if tls {
            let config =
                warden_api::tls::client_config(ca).map_err(|e| format!("tls for {url:?}: {e}"))?;
            Some(TlsConnector::from(config))
        } else {
            None
        };
        Ok(SyslogClient {
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            tls,
            hostname: hostname(),
            conn: None,
        })
    }

    /// Writes one message per record; an error drops the connection (the
    /// next call opens a new one).
    pub async fn send(&mut self, records: &[ExportRecord<'_>]) -> Result<(), SinkError> {
        let mut out = Vec::with_capacity(records.len() * 512);
        let procid = std::process::id().to_string();
        for r in records {
            let message = message(r, &self.hostname, &procid);
            out.extend_from_slice(format!("{} ", message.len()).as_bytes());
            out.extend_from_slice(message.as_bytes());
        }
        match tokio::time::timeout(TIMEOUT, self.write(&out)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.conn = None;
                Err(SinkError::Io(e))
            }
            Err(_) => {
                self.conn = None;
                Err(SinkError::Timeout(TIMEOUT))
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if let Some(conn) = self.conn.as_mut()
            && closed(conn)
        {
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(std::io::Error::other("no connection"));
        };
        conn.write_all(bytes).await?;
        conn.flush().await
    }

    async fn connect(&self) -> std::io::Result<Pin<Box<dyn Stream>>> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => Ok(Box::pin(tcp)),
            Some(connector) => {
                let name =
                    rustls::pki_types::ServerName::try_from(self.host.clone()).map_err(|_| {
                        std::io::Error::other(format!("{:?} is not a tls name", self.host))
                    })?;
                Ok(Box::pin(connector.connect(name, tcp).await?))
            }
        }
    }
}

/// Whether the collector ended the connection (or it failed): a read that
/// completes at once with end of file or an error. A collector sends
/// nothing else, so data read here (none expected) is discarded.
fn closed(conn: &mut Pin<Box<dyn Stream>>) -> bool {
    let mut buf = [0u8; 512];
    match conn.read(&mut buf).now_or_never() {
        None => false,
        Some(Ok(0)) | Some(Err(_)) => true,
        Some(Ok(_)) => false,
    }
}

/// This machine's name for the HOSTNAME field (`-` when unknown).
fn hostname() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy();
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if name.is_empty() { "-".into() } else { name }
}

/// One record's RFC 5424 message (without the octet count).
pub fn message(r: &ExportRecord<'_>, hostname: &str, procid: &str) -> String {
    let severity = match r.decision {
        Decision::Allow => 6,
        Decision::Deny => 4,
    };
    let pri = FACILITY * 8 + severity;
    let time = r.time().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let mut sd = format!("[{SD_ID}");
    let mut param = |name: &str, value: &str| {
        sd.push(' ');
        sd.push_str(name);
        sd.push_str("=\"");
        sd.push_str(&sd_value(value));
        sd.push('"');
    };
    param("id", &r.id.to_string());
    param("decision", r.decision.as_str());
    param("method", r.method);
    param("url", r.url);
    param("workspace_id", &r.workspace_id.to_string());
    param("workspace", r.workspace_name);
    param("owner", r.workspace_owner);
    param("agent", r.agent_name);
    if let Some(session) = r.session_id {
        param("session", session);
        param("sequence", &r.sequence_number.to_string());
    }
    if !r.matched_rule.is_empty() {
        param("rule", r.matched_rule);
    }
    if !r.process.is_empty() {
        param("process", r.process);
    }
    param("peer_uid", &r.peer.uid.to_string());
    param("peer_gid", &r.peer.gid.to_string());
    param("peer_pid", &r.peer.pid.to_string());
    if !r.peer.comm.is_empty() {
        param("peer_comm", r.peer.comm);
    }
    if !r.peer.exe.is_empty() {
        param("peer_exe", r.peer.exe);
    }
    if let Some(digest) = r.policy_digest {
        param("policy_digest", digest);
    }
    if r.event_time.is_none() {
        param("time_received", "true");
    }
    if r.conflict {
        param("conflict", "true");
    }
    sd.push(']');
    format!(
        "<{pri}>1 {time} {hostname} warden {procid} boundary {sd} {} {} {}",
        r.decision.as_str(),
        quote(r.method),
        quote(r.url)
    )
}

/// A structured-data parameter value: Go-quoted without the outer quotes,
/// then RFC 5424-escaped.
pub fn sd_value(value: &str) -> String {
    let quoted = quote(value);
    let inner = &quoted[1..quoted.len() - 1];
    let mut out = String::with_capacity(inner.len());
    for c in inner.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
