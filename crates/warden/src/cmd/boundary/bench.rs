//! `warden boundary bench`: the same request mix through `warden boundary`
//! and through squid (when installed) to a local origin, side by side.
//!
//! Scenarios, each with keep-alive connections (`--concurrency` of them):
//! plain HTTP (absolute-form GETs through the proxy), CONNECT tunnels (TLS
//! to the origin inside a tunnel the proxy does not open), intercepted
//! HTTPS (the proxy terminates TLS with its own CA and re-encrypts to the
//! origin; squid with `ssl_bump`), and plain HTTP at a fixed rate
//! (`--rate`, for the added-latency target). The same requests go to the
//! origin directly first: "added" latency is the proxy's percentile minus
//! the direct one. "cpu us/req" is the proxy process's CPU time (user and
//! system, every thread, from `/proc/PID/stat`) over the measurement,
//! divided by its requests: the figure that holds when the machine is
//! loaded.
//!
//! `warden boundary` runs as a child process (this binary) with its audit
//! records going to a local socket that reads and discards them (a stand-in
//! for the agent, whose cost is not the proxy's). squid runs as a child
//! with equivalent `dstdomain`/`method` ACLs; Debian's `squid-openssl`
//! brings `ssl_bump` (`apt-get install squid-openssl`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_api::time::parse_duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Concurrent keep-alive connections per measurement.
    #[arg(long, env = "WARDEN_BOUNDARY_BENCH_CONCURRENCY", default_value_t = 16)]
    concurrency: usize,
    /// How long each measurement runs (e.g. 5s).
    #[arg(long, env = "WARDEN_BOUNDARY_BENCH_DURATION", default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Requests/s of the fixed-rate plain HTTP measurement.
    #[arg(long, env = "WARDEN_BOUNDARY_BENCH_RATE", default_value_t = 1000)]
    rate: u32,
    /// Leave squid out even when it is installed.
    #[arg(long, env = "WARDEN_BOUNDARY_BENCH_NO_SQUID", value_parser = clap::builder::BoolishValueParser::new())]
    no_squid: bool,
}

pub fn main(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("warden boundary bench: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(bench(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden boundary bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// How a client reaches the origin.
#[derive(Clone)]
enum Route {
    /// Straight to the origin (plain or TLS).
    Direct {
        tls: Option<Arc<rustls::ClientConfig>>,
    },
    /// Absolute-form requests to an HTTP proxy.
    Proxy { proxy: SocketAddr },
    /// CONNECT through the proxy, then TLS trusting `roots`.
    Tunnel {
        proxy: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
    },
}

/// A line of the table: scenario, proxy, figures, latency added over direct
/// (p50, p99), the proxy's CPU time per request in µs.
type Row = (String, String, Figures, Option<(f64, f64)>, Option<f64>);

/// One measurement's figures.
struct Figures {
    requests: u64,
    errors: u64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let work = tempfile::Builder::new()
        .prefix("warden-boundary-bench-")
        .tempdir()
        .context("creating a work dir")?;
    let dir = work.path();
    let origin_tls = OriginTls::new(dir)?;
    let http_origin = start_origin(None).await?;
    let https_origin = start_origin(Some(origin_tls.server.clone())).await?;
    let sink = start_sink(&dir.join("agent.sock")).await?;
    let origin_roots = client_config(std::slice::from_ref(&origin_tls.ca_der));

    let rule = "domain=localhost method=GET";
    let exe = std::env::current_exe().context("finding this binary")?;
    let socket = dir.join("agent.sock");
    let mut plain = spawn_warden(&exe, &["--allow", rule], &socket).await?;
    let ca_dir = dir.join("warden-ca");
    let origin_ca = dir.join("origin-ca.pem");
    let mut intercepting = spawn_warden(
        &exe,
        &[
            "--allow",
            rule,
            "--tls-intercept",
            "--ca-dir",
            ca_dir.to_str().unwrap_or_default(),
            "--upstream-ca",
            origin_ca.to_str().unwrap_or_default(),
        ],
        &socket,
    )
    .await?;
    let warden_ca = read_pem_certs(&ca_dir.join("ca.crt"))?;

    let squid = if args.no_squid {
        None
    } else {
        match Squid::start(dir, http_origin.port(), https_origin.port()).await {
            Ok(squid) => Some(squid),
            Err(e) => {
                eprintln!("squid left out: {e:#}");
                None
            }
        }
    };

    let plain_pid = plain.child.id();
    let intercepting_pid = intercepting.child.id();
    let intercepting_address = intercepting.address;
    let squid_pid = squid.as_ref().and_then(|squid| squid.child.id());
    let http_url = format!("http://localhost:{}/ok", http_origin.port());
    let https_url = format!("https://localhost:{}/ok", https_origin.port());
    let mut rows: Vec<Row> = Vec::new();
    let mut measure = async |scenario: &str,
                             who: &str,
                             route: Route,
                             url: &str,
                             rate: Option<u32>,
                             base: Option<(f64, f64)>| {
        // The proxy's own CPU time (all its threads), per request.
        let pid = match (who, &route) {
            ("direct", _) => None,
            ("squid", _) => squid_pid,
            (_, Route::Proxy { proxy } | Route::Tunnel { proxy, .. })
                if *proxy == intercepting_address =>
            {
                intercepting_pid
            }
            _ => plain_pid,
        };
        let cpu_before = pid.and_then(cpu_seconds);
        let figures = run_load(route, url, args.concurrency, args.duration, rate).await;
        let cpu = match (cpu_before, pid.and_then(cpu_seconds)) {
            (Some(before), Some(after)) if figures.requests > 0 => {
                Some((after - before) * 1e6 / figures.requests as f64)
            }
            _ => None,
        };
        let added = base.map(|(p50, p99)| (figures.p50_ms - p50, figures.p99_ms - p99));
        let key = (figures.p50_ms, figures.p99_ms);
        rows.push((scenario.to_owned(), who.to_owned(), figures, added, cpu));
        key
    };

    eprintln!("measuring plain HTTP ...");
    let base = measure(
        "plain HTTP",
        "direct",
        Route::Direct { tls: None },
        &http_url,
        None,
        None,
    )
    .await;
    measure(
        "plain HTTP",
        "warden",
        Route::Proxy {
            proxy: plain.address,
        },
        &http_url,
        None,
        Some(base),
    )
    .await;
    if let Some(squid) = &squid {
        measure(
            "plain HTTP",
            "squid",
            Route::Proxy { proxy: squid.plain },
            &http_url,
            None,
            Some(base),
        )
        .await;
    }
    eprintln!("measuring CONNECT tunnels ...");
    let direct_tls = Route::Direct {
        tls: Some(origin_roots.clone()),
    };
    let base = measure(
        "CONNECT tunnel",
        "direct",
        direct_tls.clone(),
        &https_url,
        None,
        None,
    )
    .await;
    measure(
        "CONNECT tunnel",
        "warden",
        Route::Tunnel {
            proxy: plain.address,
            tls: origin_roots.clone(),
        },
        &https_url,
        None,
        Some(base),
    )
    .await;
    if let Some(squid) = &squid {
        measure(
            "CONNECT tunnel",
            "squid",
            Route::Tunnel {
                proxy: squid.plain,
                tls: origin_roots.clone(),
            },
            &https_url,
            None,
            Some(base),
        )
        .await;
    }
    eprintln!("measuring intercepted HTTPS ...");
    measure(
        "intercepted HTTPS",
        "warden",
        Route::Tunnel {
            proxy: intercepting.address,
            tls: client_config(&warden_ca),
        },
        &https_url,
        None,
        Some(base),
    )
    .await;
    if let Some(squid) = &squid
        && let Some(bump) = squid.bump
    {
        measure(
            "intercepted HTTPS",
            "squid",
            Route::Tunnel {
                proxy: bump,
                tls: client_config(&squid.ca),
            },
            &https_url,
            None,
            Some(base),
        )
        .await;
    }
    let rate = args.rate;
    eprintln!("measuring plain HTTP at {rate} requests/s ...");
    let label = format!("plain HTTP @{rate}/s");
    let base = measure(
        &label,
        "direct",
        Route::Direct { tls: None },
        &http_url,
        Some(rate),
        None,
    )
    .await;
    measure(
        &label,
        "warden",
        Route::Proxy {
            proxy: plain.address,
        },
        &http_url,
        Some(rate),
        Some(base),
    )
    .await;
    if let Some(squid) = &squid {
        measure(
            &label,
            "squid",
            Route::Proxy { proxy: squid.plain },
            &http_url,
            Some(rate),
            Some(base),
        )
        .await;
    }

    println!(
        "{:<24} {:<7} {:>10} {:>8} {:>8} {:>10} {:>10} {:>7} {:>11}",
        "scenario",
        "via",
        "req/s",
        "p50 ms",
        "p99 ms",
        "+p50 ms",
        "+p99 ms",
        "errors",
        "cpu us/req"
    );
    for (scenario, who, f, added, cpu) in &rows {
        let (a50, a99) = match added {
            Some((a, b)) => (format!("{a:.3}"), format!("{b:.3}")),
            None => ("-".into(), "-".into()),
        };
        let cpu = cpu.map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.1}"));
        println!(
            "{scenario:<24} {who:<7} {:>10.0} {:>8.3} {:>8.3} {a50:>10} {a99:>10} {:>7} {cpu:>11}",
            f.per_second, f.p50_ms, f.p99_ms, f.errors
        );
    }
    for scenario in ["plain HTTP", "CONNECT tunnel", "intercepted HTTPS"] {
        let rate_of = |who: &str| {
            rows.iter()
                .find(|(s, w, ..)| s == scenario && w == who)
                .map(|(_, _, f, ..)| f.per_second)
        };
        if let (Some(w), Some(s)) = (rate_of("warden"), rate_of("squid")) {
            println!("{scenario}: warden/squid requests/s = {:.2}", w / s);
        }
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average during the run: {}", load.trim());
    }
    plain.stop().await;
    intercepting.stop().await;
    if let Some(mut squid) = squid {
        squid.stop().await;
    }
    drop(sink);
    Ok(())
}

/// Runs the load and returns its figures. `rate`: that many requests/s in
/// all, spread over the connections (otherwise as fast as they go).
async fn run_load(
    route: Route,
    url: &str,
    concurrency: usize,
    duration: Duration,
    rate: Option<u32>,
) -> Figures {
    let uri: http::Uri = url.parse().expect("bench URLs parse");
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let route = route.clone();
        let uri = uri.clone();
        let interval =
            rate.map(|r| Duration::from_secs_f64(concurrency as f64 / f64::from(r.max(1))));
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut sender = None;
            let mut ticker = interval.map(|i| {
                let mut t = tokio::time::interval(i);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            while Instant::now() < deadline {
                if let Some(t) = &mut ticker {
                    t.tick().await;
                }
                if sender.is_none() {
                    match connect(&route, &uri).await {
                        Ok(s) => sender = Some(s),
                        Err(_) => {
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let Some(s) = sender.as_mut() else { continue };
                let began = Instant::now();
                match request(s, &route, &uri).await {
                    Ok(()) => latencies.push(began.elapsed().as_micros() as u32),
                    Err(_) => {
                        errors += 1;
                        sender = None;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        if let Ok((l, e)) = worker.await {
            latencies.extend(l);
            errors += e;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        f64::from(latencies[i]) / 1000.0
    };
    Figures {
        requests: latencies.len() as u64,
        errors,
        per_second: latencies.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(route: &Route, uri: &http::Uri) -> anyhow::Result<Sender> {
    let host = uri.host().unwrap_or("localhost").to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let io: Box<dyn Io> = match route {
        Route::Direct { tls: None } => Box::new(tcp(&format!("127.0.0.1:{port}")).await?),
        Route::Direct { tls: Some(tls) } => {
            let stream = tcp(&format!("127.0.0.1:{port}")).await?;
            Box::new(tls_connect(tls, &host, stream).await?)
        }
        Route::Proxy { proxy } => Box::new(tcp(&proxy.to_string()).await?),
        Route::Tunnel { proxy, tls } => {
            let mut stream = tcp(&proxy.to_string()).await?;
            let connect = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n");
            stream.write_all(connect.as_bytes()).await?;
            let mut reader = BufReader::new(stream);
            let mut status = String::new();
            reader.read_line(&mut status).await?;
            if !status.contains(" 200") {
                bail!("CONNECT refused: {status}");
            }
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).await?;
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            Box::new(tls_connect(tls, &host, reader.into_inner()).await?)
        }
    };
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn request(sender: &mut Sender, route: &Route, uri: &http::Uri) -> anyhow::Result<()> {
    sender.ready().await?;
    // Through a plain proxy the request line carries the absolute URL.
    let target = match route {
        Route::Proxy { .. } => uri.to_string(),
        _ => uri.path().to_owned(),
    };
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let request = Request::get(target)
        .header(http::header::HOST, authority)
        .body(Empty::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    if !status.is_success() {
        bail!("status {status}");
    }
    Ok(())
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

async fn tcp(address: &str) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn tls_connect(
    config: &Arc<rustls::ClientConfig>,
    host: &str,
    stream: TcpStream,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_owned())?;
    Ok(tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, stream)
        .await?)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(roots: &[CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for cert in roots {
        let _ = store.add(cert.clone());
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn read_pem_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading {}", path.display()))
}

/// The origin's TLS: a bench CA and a certificate for localhost.
struct OriginTls {
    ca_der: CertificateDer<'static>,
    server: Arc<rustls::ServerConfig>,
}

impl OriginTls {
    fn new(dir: &Path) -> anyhow::Result<OriginTls> {
        let (ca_pem, ca_der, issuer) = make_ca("warden bench origin CA")?;
        std::fs::write(dir.join("origin-ca.pem"), ca_pem)?;
        let key = rcgen::KeyPair::generate()?;
        let leaf =
            rcgen::CertificateParams::new(vec!["localhost".into()])?.signed_by(&key, &issuer)?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(OriginTls {
            ca_der,
            server: Arc::new(server),
        })
    }
}

type Ca = (
    String,
    CertificateDer<'static>,
    rcgen::Issuer<'static, rcgen::KeyPair>,
);

fn make_ca(name: &str) -> anyhow::Result<Ca> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok((
        cert.pem(),
        cert.der().clone(),
        rcgen::Issuer::new(params, key),
    ))
}

/// An origin answering every request with a short body, keep-alive on.
async fn start_origin(tls: Option<Arc<rustls::ServerConfig>>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"origin-ok"),
                    )))
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    Some(config) => {
                        if let Ok(stream) =
                            tokio_rustls::TlsAcceptor::from(config).accept(stream).await
                        {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
    Ok(address)
}

/// A stand-in for the agent's socket: reads and discards frames, closing
/// a connection that asks for acknowledgements (as a reference agent does).
async fn start_sink(path: &Path) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::UnixListener::bind(path)?;
    Ok(tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut header = [0u8; 4];
                let mut payload = vec![0u8; 1 << 16];
                while stream.read_exact(&mut header).await.is_ok() {
                    if header[0] >= 0x40 {
                        return;
                    }
                    let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
                    if len > payload.len() || stream.read_exact(&mut payload[..len]).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    }))
}

/// A `warden boundary` child.
struct Proxy {
    child: Child,
    address: SocketAddr,
}

impl Proxy {
    async fn stop(&mut self) {
        if let Some(pid) = self
            .child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

async fn spawn_warden(exe: &Path, args: &[&str], socket: &Path) -> anyhow::Result<Proxy> {
    let mut child = Command::new(exe)
        .arg("boundary")
        .args(args)
        .arg("--log-proxy-socket-path")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting warden boundary")?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let mut lines = BufReader::new(stderr).lines();
    let needle = format!("{} http://", warden_boundary::run::LISTENING);
    let address = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some((_, rest)) = line.split_once(&needle) {
                return Ok(rest.trim().parse::<SocketAddr>()?);
            }
        }
        Err(anyhow!("warden boundary exited before listening"))
    })
    .await
    .context("waiting for warden boundary")??;
    // Keep reading its stderr so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Proxy { child, address })
}

/// squid as a child process: one plain port and, with `squid-openssl`, an
/// `ssl_bump` port.
struct Squid {
    child: Child,
    plain: SocketAddr,
    bump: Option<SocketAddr>,
    ca: Vec<CertificateDer<'static>>,
}

impl Squid {
    async fn start(dir: &Path, http_port: u16, https_port: u16) -> anyhow::Result<Squid> {
        let squid = which("squid")
            .ok_or_else(|| anyhow!("squid is not installed (apt-get install squid-openssl)"))?;
        let work = dir.join("squid");
        std::fs::create_dir_all(&work)?;
        let plain = free_port()?;
        let certgen = PathBuf::from("/usr/lib/squid/security_file_certgen");
        let (ca_pem, ca_der, issuer) = make_ca("warden bench squid CA")?;
        let bump = if certgen.exists() {
            let port = free_port()?;
            std::fs::write(
                work.join("ca.pem"),
                format!("{ca_pem}{}", issuer.key().serialize_pem()),
            )?;
            let db = work.join("ssl_db");
            let status = std::process::Command::new(&certgen)
                .args(["-c", "-s"])
                .arg(&db)
                .args(["-M", "4MB"])
                .output()?;
            if !status.status.success() {
                bail!(
                    "security_file_certgen -c: {}",
                    String::from_utf8_lossy(&status.stderr)
                );
            }
            Some(port)
        } else {
            None
        };
        let mut config = format!(
            "http_port 127.0.0.1:{plain}\n\
             pid_filename {w}/squid.pid\n\
             cache deny all\ncache_mem 0\n\
             access_log stdio:{w}/access.log\ncache_log {w}/cache.log\ncoredump_dir {w}\n\
             shutdown_lifetime 0 seconds\n\
             acl allowed dstdomain localhost\nacl getonly method GET\nacl connect method CONNECT\n\
             acl origin_ports port {http_port} {https_port}\n\
             http_access allow connect allowed origin_ports\n\
             http_access allow allowed getonly origin_ports\n\
             http_access deny all\n",
            w = work.display()
        );
        if let Some(port) = bump {
            config.push_str(&format!(
                "http_port 127.0.0.1:{port} ssl-bump cert={w}/ca.pem generate-host-certificates=on dynamic_cert_mem_cache_size=4MB\n\
                 sslcrtd_program {certgen} -s {w}/ssl_db -M 4MB\n\
                 tls_outgoing_options cafile={origin_ca}\n\
                 acl step1 at_step SslBump1\nssl_bump peek step1\nssl_bump bump all\n",
                w = work.display(),
                certgen = certgen.display(),
                origin_ca = dir.join("origin-ca.pem").display(),
            ));
        }
        std::fs::write(work.join("squid.conf"), config)?;
        // squid drops root for its `proxy` user, which must own its files.
        let _ = std::process::Command::new("chown")
            .args(["-R", "proxy"])
            .arg(&work)
            .status();
        let _ = std::process::Command::new("chmod")
            .arg("755")
            .arg(dir)
            .status();
        let _ = std::process::Command::new("chmod")
            .arg("644")
            .arg(dir.join("origin-ca.pem"))
            .status();
        let child = Command::new(squid)
            .arg("-f")
            .arg(work.join("squid.conf"))
            .args(["-N", "-d0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting squid")?;
        let plain = SocketAddr::from(([127, 0, 0, 1], plain));
        let bump = bump.map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        let ready = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(plain).await.is_ok() {
                break;
            }
            if Instant::now() > ready {
                let log = std::fs::read_to_string(work.join("cache.log")).unwrap_or_default();
                bail!("squid did not start listening: {log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Squid {
            child,
            plain,
            bump,
            ca: vec![ca_der],
        })
    }

    async fn stop(&mut self) {
        if let Some(pid) = self
            .child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// The CPU time (user and system, all threads) a process has used so far,
/// from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th, stime the 13th.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
