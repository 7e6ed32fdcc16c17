//! `warden server`: parses the flags (each with its environment variable,
//! see `docs/cli.md`), sets up logging (JSON when `--log-format json`, so every
//! stderr line is JSON), binds, writes `<data-dir>/server-url`, announces the
//! URL and runs the control plane (`warden_server::run`) until SIGTERM or
//! SIGINT.
//!
//! Exit codes: 0 after a clean shutdown, 1 runtime failure, 2 configuration.

use clap::builder::{BoolishValueParser, TypedValueParser};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use warden_api::time::parse_duration;
use warden_server::{
    AdminTokenSource, Config, ConnectionLimits, DEFAULT_MAX_RESPONSE_BYTES, LineFormat, TlsFiles,
    check_listen,
};
use warden_store::DatabaseUrl;

use super::failure::Failure;
use super::process::{
    ANNOUNCE, forward_signals, init_logging, private_files, raise_open_files_limit,
    write_server_url,
};

/// Environment variable holding the admin token (never a flag: flags show in
/// the process list).
const ADMIN_TOKEN_ENV: &str = "WARDEN_ADMIN_TOKEN";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on for gRPC and HTTP (port 0 picks a free port).
    #[arg(long, env = "WARDEN_LISTEN", default_value = "127.0.0.1:7080")]
    listen: String,
    /// Directory for the embedded database, the admin token and server-url.
    #[arg(long, env = "WARDEN_DATA_DIR", default_value = "./warden-data")]
    data_dir: PathBuf,
    /// sqlite://PATH or postgres://... (default: sqlite://<data-dir>/warden.db).
    #[arg(long, env = "WARDEN_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Format of the boundary log lines (and of every stderr line).
    #[arg(long, env = "WARDEN_LOG_FORMAT", value_enum, default_value_t = Format::Text)]
    log_format: Format,
    /// PEM certificate chain to serve TLS with (needs --tls-key).
    #[arg(long, env = "WARDEN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "WARDEN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (agent tokens travel in clear).
    #[arg(long, env = "WARDEN_INSECURE_LISTEN", value_parser = BoolishValueParser::new())]
    insecure_listen: bool,
    /// How long a shutdown waits for open calls (e.g. 30s).
    #[arg(long, env = "WARDEN_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// Delete records received longer ago than this (e.g. 30d; default: keep
    /// all). CODER_BOUNDARY_LOG_RETENTION is read too, when neither this flag
    /// nor WARDEN_RETENTION is set.
    #[arg(long, env = "WARDEN_RETENTION", value_parser = warden_server::retention::parse_period)]
    retention: Option<Duration>,
    /// Connections open at once, in all (lowered to fit the open-file limit).
    #[arg(long, env = "WARDEN_MAX_CONNECTIONS", default_value_t = ConnectionLimits::default().max_connections, value_parser = clap::value_parser!(u32).range(2..).map(|n| n as usize))]
    max_connections: usize,
    /// Connections only clients with a valid agent or admin token may use.
    #[arg(long, env = "WARDEN_RESERVED_CONNECTIONS", default_value_t = ConnectionLimits::default().reserved)]
    reserved_connections: usize,
    /// Close a connection that sent no valid token this long after it opened
    /// or its last request began or ended (e.g. 10s).
    #[arg(long, env = "WARDEN_UNAUTHENTICATED_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    unauthenticated_timeout: Duration,
    /// Close an authenticated connection after this long without a request.
    #[arg(long, env = "WARDEN_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// The most bytes of records one API page holds (at least one record);
    /// a page cut short says where to go on.
    #[arg(long, env = "WARDEN_MAX_RESPONSE_BYTES", default_value_t = DEFAULT_MAX_RESPONSE_BYTES, value_parser = clap::value_parser!(u64).range(1024..).map(|n| n as usize))]
    max_response_bytes: usize,
    /// Store longer URLs cut to this many bytes, with their original length
    /// (flagged in the API and on the line; never dropped).
    #[arg(long, env = "WARDEN_MAX_URL_BYTES", default_value_t = warden_store::DEFAULT_MAX_URL_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(256..=(1 << 24)))]
    max_url_bytes: u64,
    /// The checkpoint signing key (Ed25519 PKCS#8, mode 0600; default:
    /// <data-dir>/signing-key, generated on first start).
    #[arg(long, env = "WARDEN_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    /// Sign a session's completeness verdict once it has been idle this long
    /// without its client reporting an end (e.g. 10m; reference clients
    /// never report one).
    #[arg(long, env = "WARDEN_SESSION_IDLE", default_value = "10m", value_parser = parse_duration)]
    session_idle: Duration,
    /// Export every record as OTLP logs to this endpoint (the full logs URL
    /// for http/protobuf, e.g. http://collector:4318/v1/logs; for grpc,
    /// e.g. http://collector:4317).
    #[arg(long, env = "WARDEN_EXPORT_OTLP")]
    export_otlp: Option<String>,
    /// The OTLP transport: http/protobuf or grpc.
    #[arg(long, env = "WARDEN_EXPORT_OTLP_PROTOCOL", default_value = "http/protobuf",
          value_parser = warden_server::export::otlp::OtlpProtocol::parse)]
    export_otlp_protocol: warden_server::export::otlp::OtlpProtocol,
    /// Export every record as OCSF HTTP Activity JSON lines to this file.
    #[arg(long, env = "WARDEN_EXPORT_OCSF")]
    export_ocsf: Option<PathBuf>,
    /// Rotate the OCSF file when it would grow past this many bytes.
    #[arg(long, env = "WARDEN_EXPORT_OCSF_MAX_BYTES", default_value_t = warden_server::export::file::DEFAULT_MAX_BYTES)]
    export_ocsf_max_bytes: u64,
    /// Rotated OCSF files kept (FILE.1 is the newest).
    #[arg(long, env = "WARDEN_EXPORT_OCSF_KEEP", default_value_t = warden_server::export::file::DEFAULT_KEEP)]
    export_ocsf_keep: usize,
    /// Export every record as RFC 5424 syslog to tcp://HOST:PORT or
    /// tls://HOST:PORT (octet-counted framing).
    #[arg(long, env = "WARDEN_EXPORT_SYSLOG")]
    export_syslog: Option<String>,
    /// The CA certificate (PEM) a tls:// syslog collector's certificate is
    /// checked against (default: the system's roots).
    #[arg(long, env = "WARDEN_EXPORT_SYSLOG_CA")]
    export_syslog_ca: Option<PathBuf>,
    /// The signing key being replaced (the new one is --signing-key, or a
    /// fresh <data-dir>/signing-key): at start it signs a last checkpoint and
    /// introduces the new key (a key.rotate admin event), so verify
    /// --trusted-key OLD accepts the new one.
    #[arg(long, env = "WARDEN_PREVIOUS_SIGNING_KEY")]
    previous_signing_key: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    /// Coder's control plane's line (docs/stderr-format.md, section coder).
    Coder,
}

pub fn main(args: Args) -> ExitCode {
    init_logging("info", args.log_format == Format::Json);
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // Through tracing, so that in JSON mode this line is JSON too.
            tracing::error!("warden server: {}", failure.message());
            ExitCode::from(failure.code())
        }
    }
}

/// Everything `run` needs, checked before any I/O but the data dir.
struct Prepared {
    config: Config,
    addr: SocketAddr,
    data_dir: PathBuf,
}

fn prepare(args: Args) -> Result<Prepared, Failure> {
    let addr = resolve(&args.listen).map_err(Failure::usage)?;
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    check_listen(addr, tls.is_some(), args.insecure_listen)?;
    let database = match &args.database_url {
        Some(url) => url
            .parse::<DatabaseUrl>()
            .map_err(|e| Failure::usage(anyhow::Error::new(e).context("--database-url")))?,
        None => DatabaseUrl::Sqlite(args.data_dir.join("warden.db")),
    };
    let admin_token = match std::env::var(ADMIN_TOKEN_ENV) {
        Ok(token) if !token.trim().is_empty() => AdminTokenSource::Given(token.trim().to_owned()),
        _ => AdminTokenSource::DataDir(args.data_dir.clone()),
    };
    let mut config = Config::new(database, admin_token);
    config.log_format = match args.log_format {
        Format::Text => LineFormat::Text,
        Format::Json => LineFormat::Json,
        Format::Coder => LineFormat::Coder,
    };
    config.tls = tls;
    config.insecure_listen = args.insecure_listen;
    config.shutdown_grace = args.shutdown_grace;
    config.session_idle = args.session_idle;
    let retention =
        retention(args.retention, |name| std::env::var(name).ok()).map_err(Failure::usage_msg)?;
    config.retention = retention.map(warden_server::retention::Retention::new);
    config.connections = ConnectionLimits {
        max_connections: args.max_connections,
        reserved: args.reserved_connections,
        unauthenticated_timeout: args.unauthenticated_timeout,
        idle_timeout: args.idle_timeout,
    };
    config.connections.check()?;
    config.max_response_bytes = args.max_response_bytes;
    config.limits.max_url_bytes = usize::try_from(args.max_url_bytes).unwrap_or(usize::MAX);
    config.signing_key = Some(match args.signing_key {
        Some(path) => (path, false),
        None => (args.data_dir.join("signing-key"), true),
    });
    config.exports.sinks = export_sinks(
        &args.export_otlp,
        args.export_otlp_protocol,
        &args.export_ocsf,
        args.export_ocsf_max_bytes,
        args.export_ocsf_keep,
        &args.export_syslog,
        &args.export_syslog_ca,
    );
    // Checked now, so a bad target is a configuration error (exit 2).
    warden_server::export::sinks(&config.exports)
        .map_err(|e| Failure::usage_msg(format_args!("export: {e}")))?;
    config.previous_signing_key = args.previous_signing_key;
    Ok(Prepared {
        config,
        addr,
        data_dir: args.data_dir,
    })
}

/// The variable Coder's control plane reads its boundary log retention
/// from: an alias of `--retention` for teams moving over.
const CODER_RETENTION_ENV: &str = "CODER_BOUNDARY_LOG_RETENTION";

/// `--retention` (or `WARDEN_RETENTION`) when given, else the Coder alias.
fn retention(
    given: Option<Duration>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Duration>, String> {
    if given.is_some() {
        return Ok(given);
    }
    match env(CODER_RETENTION_ENV) {
        Some(value) if !value.trim().is_empty() => warden_server::retention::parse_period(&value)
            .map(Some)
            .map_err(|e| format!("{CODER_RETENTION_ENV}: {e}")),
        _ => Ok(None),
    }
}

/// The sinks the export flags name.
fn export_sinks(
    otlp: &Option<String>,
    protocol: warden_server::export::otlp::OtlpProtocol,
    ocsf: &Option<PathBuf>,
    max_bytes: u64,
    keep: usize,
    syslog: &Option<String>,
    syslog_ca: &Option<PathBuf>,
) -> Vec<warden_server::export::SinkTarget> {
    use warden_server::export::SinkTarget;
    let mut sinks = Vec::new();
    if let Some(url) = otlp {
        sinks.push(SinkTarget::Otlp {
            url: url.clone(),
            protocol,
        });
    }
    if let Some(path) = ocsf {
        sinks.push(SinkTarget::Ocsf {
            path: path.clone(),
            max_bytes,
            keep,
        });
    }
    if let Some(url) = syslog {
        sinks.push(SinkTarget::Syslog {
            url: url.clone(),
            ca: syslog_ca.clone(),
        });
    }
    sinks
}

fn serve(args: Args) -> Result<(), Failure> {
    let mut prepared = prepare(args)?;
    private_files();
    warden_server::files::prepare_data_dir(&prepared.data_dir)?;
    let open_files = raise_open_files_limit();
    prepared.config.connections = fit_open_files(prepared.config.connections, open_files);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::runtime)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(prepared.addr)
            .await
            .with_context(|| format!("listening on {}", prepared.addr))
            .map_err(Failure::runtime)?;
        let server = warden_server::Server::start(
            prepared.config,
            listener,
            Arc::new(warden_server::Stderr),
        )
        .await?;
        // SIGTERM is handled from before the announcement: whoever waits for
        // the line may stop the server right after it.
        let shutdown = CancellationToken::new();
        forward_signals(shutdown.clone()).map_err(Failure::runtime)?;
        // Announced only now: the store is open and the admin token file
        // exists, so a script that waits for this line can use both.
        let url = server.url();
        let url_file = write_server_url(&prepared.data_dir, &url).map_err(Failure::runtime)?;
        tracing::info!(target: ANNOUNCE, "warden server listening on {url}");
        tracing::info!(target: ANNOUNCE, "web page at {url}/ (sign in with the admin token)");

        let result = server.serve(shutdown).await;
        // A stale URL would send the CLI to a server that is gone.
        let _ = std::fs::remove_file(&url_file);
        Ok(result?)
    })
}

/// Open files the server needs besides its connections: the listener, the
/// database and its pool, logs.
const OTHER_FILES: u64 = 256;

/// The connection limits lowered to what the open-file limit allows (with
/// a warning), so that the limits, not the file descriptors, run out first.
fn fit_open_files(limits: ConnectionLimits, open_files: u64) -> ConnectionLimits {
    let room = usize::try_from(open_files.saturating_sub(OTHER_FILES)).unwrap_or(usize::MAX);
    if limits.max_connections <= room {
        return limits;
    }
    let max_connections = room.max(2);
    // The reserve keeps its share.
    let reserved = (limits.reserved as u128 * max_connections as u128
        / limits.max_connections as u128) as usize;
    let fitted = ConnectionLimits {
        max_connections,
        reserved: reserved.min(max_connections - 1),
        ..limits
    };
    tracing::warn!(
        open_files,
        "the open-file limit allows {} connections, fewer than --max-connections {}: serving at most {} ({} reserved for authenticated clients); raise the limit (LimitNOFILE= in a systemd unit) for more",
        fitted.max_connections,
        limits.max_connections,
        fitted.max_connections,
        fitted.reserved
    );
    fitted
}

/// `HOST:PORT` to one address (the first a name resolves to).
fn resolve(listen: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = listen.parse() {
        return Ok(addr);
    }
    listen
        .to_socket_addrs()
        .with_context(|| format!("--listen {listen:?} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("--listen {listen:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::failure::USAGE;
    use crate::cmd::parse_args;

    #[test]
    fn coder_boundary_log_retention_is_an_alias_of_retention() {
        let coder = |value: &'static str| {
            move |name: &str| (name == CODER_RETENTION_ENV).then(|| value.to_owned())
        };
        let day = Duration::from_secs(86_400);
        assert_eq!(retention(None, coder("7d")), Ok(Some(7 * day)));
        // Go's duration form, as Coder's configuration writes it.
        assert_eq!(retention(None, coder("720h0m0s")), Ok(Some(30 * day)));
        // The flag (or WARDEN_RETENTION) wins.
        assert_eq!(retention(Some(day), coder("7d")), Ok(Some(day)));
        assert_eq!(retention(None, |_: &str| None), Ok(None));
        let e = retention(None, coder("forever")).unwrap_err();
        assert!(e.starts_with("CODER_BOUNDARY_LOG_RETENTION: "), "{e}");
        assert!(retention(None, coder("0s")).is_err());
    }

    fn parse(argv: &[&str]) -> Args {
        parse_args(argv).unwrap()
    }

    #[test]
    fn defaults_use_the_data_dir() {
        let prepared = prepare(parse(&["--data-dir", "/tmp/w"])).ok().unwrap();
        assert_eq!(prepared.addr, "127.0.0.1:7080".parse().unwrap());
        assert_eq!(
            prepared.config.database,
            DatabaseUrl::Sqlite("/tmp/w/warden.db".into())
        );
        assert!(prepared.config.tls.is_none());
        assert_eq!(prepared.config.log_format, LineFormat::Text);
    }

    #[test]
    fn plain_http_off_loopback_is_a_configuration_error() {
        let failure = prepare(parse(&["--listen", "0.0.0.0:0"])).err().unwrap();
        assert_eq!(failure.code(), USAGE);
        assert!(prepare(parse(&["--listen", "0.0.0.0:0", "--insecure-listen"])).is_ok());
        let tls = prepare(parse(&[
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
        ]));
        assert!(tls.ok().unwrap().config.tls.is_some());
    }

    #[test]
    fn connection_limits_come_from_flags_and_fit_the_open_files() {
        let prepared = prepare(parse(&[
            "--max-connections",
            "100",
            "--reserved-connections",
            "20",
            "--unauthenticated-timeout",
            "2s",
            "--idle-timeout",
            "1m",
            "--max-response-bytes",
            "65536",
        ]))
        .ok()
        .unwrap();
        let limits = prepared.config.connections;
        assert_eq!(
            limits,
            ConnectionLimits {
                max_connections: 100,
                reserved: 20,
                unauthenticated_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(60),
            }
        );
        assert_eq!(prepared.config.max_response_bytes, 65536);
        // Room enough: unchanged.
        assert_eq!(fit_open_files(limits, 1 << 20), limits);
        // 1024 open files leave 768 for connections; the reserve keeps a
        // quarter of them.
        let defaults = ConnectionLimits::default();
        let fitted = fit_open_files(defaults, 1024);
        assert_eq!((fitted.max_connections, fitted.reserved), (768, 192));
        assert!(fitted.check().is_ok());
        assert!(fit_open_files(defaults, 10).check().is_ok());
        // A reserve that leaves no room for new connections is refused.
        let failure = prepare(parse(&[
            "--max-connections",
            "10",
            "--reserved-connections",
            "10",
        ]))
        .err()
        .unwrap();
        assert_eq!(failure.code(), USAGE);
    }

    #[test]
    fn bad_values_are_configuration_errors() {
        assert_eq!(
            prepare(parse(&["--listen", "nowhere"]))
                .err()
                .unwrap()
                .code(),
            USAGE
        );
        assert_eq!(
            prepare(parse(&["--database-url", "mysql://x"]))
                .err()
                .unwrap()
                .code(),
            USAGE
        );
        assert!(parse_args::<Args>(&["--tls-cert", "c"]).is_err());
        assert!(parse_args::<Args>(&["--log-format", "xml"]).is_err());
    }
}
