//! The syslog export against a real rsyslog (Debian's `rsyslog`, started by
//! the test with a configuration of its own) receiving octet-counted RFC
//! 5424 over TCP into a file: every record arrives once as one message, a
//! URL with newlines and control characters included. And over TLS, against
//! a rustls listener in the test that reads the octet-counted frames.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use warden_proto::wire::{self, boundary_log};
use warden_server::export::{ExportSettings, SinkTarget};
use warden_server::{LineFormat, TlsFiles};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// rsyslogd in the foreground with a TCP input on a free port, writing
/// APP-NAME, MSGID, structured data and MSG of each message as one line.
struct Rsyslog {
    /// Killed when dropped.
    _child: tokio::process::Child,
    port: u16,
    out: PathBuf,
}

impl Rsyslog {
    async fn start(dir: &Path) -> Rsyslog {
        Rsyslog::start_on(dir, 0).await
    }

    /// On `port` (0: a free one).
    async fn start_on(dir: &Path, port: u16) -> Rsyslog {
        assert!(
            Path::new(RSYSLOGD).exists(),
            "this test needs rsyslogd: install the Debian package rsyslog (apt-get install rsyslog), or run scripts/install-test-deps.sh"
        );
        let (conf, port_file, out) = (
            dir.join("rsyslog.conf"),
            dir.join("port"),
            dir.join("received.log"),
        );
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{dir}")
module(load="imtcp")
input(type="imtcp" port="{listen}" listenPortFileName="{port}" ruleset="warden")
template(name="line" type="string" string="%app-name% %msgid% %structured-data% %msg%\n")
ruleset(name="warden") {{ action(type="omfile" file="{out}" template="line") }}
"#,
                dir = dir.display(),
                listen = port,
                port = port_file.display(),
                out = out.display()
            ),
        )
        .unwrap();
        let child = tokio::process::Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting rsyslogd");
        let deadline = Instant::now() + DEADLINE;
        let port = loop {
            // rsyslog writes the port file only for a port it picked; a
            // given port is known once it accepts a connection.
            let listening = if port == 0 {
                std::fs::read_to_string(&port_file)
                    .ok()
                    .and_then(|p| p.trim().parse().ok())
            } else {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                    .then_some(port)
            };
            if let Some(port) = listening {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Rsyslog {
            _child: child,
            port,
            out,
        }
    }

    async fn wait_for_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {n} messages, got {lines:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn syslog_config(dir: &Path, url: String, ca: Option<PathBuf>) -> warden_server::Config {
    let mut config = config(dir, LineFormat::Text);
    config.exports = ExportSettings {
        sinks: vec![SinkTarget::Syslog { url, ca }],
        poll: Duration::from_millis(100),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_secs(1),
        ..ExportSettings::default()
    };
    config
}

const HOSTILE: &str = "https://evil.example/a\n<13>1 2025-01-01T00:00:00Z h forged - - - injected\r\n\u{1b}[31mred] \"x\" \\";

/// Sends 50 ordinary records and one whose URL tries to break out.
async fn report(server: &Server) -> usize {
    let token = server.workspace("dev").await.agent_token;
    let mut agent = server.agent(&token).await;
    for chunk in 0..5 {
        let logs = (chunk * 10..chunk * 10 + 10)
            .map(|s| {
                log(
                    s,
                    s % 2 == 0,
                    "GET",
                    &format!("https://example.com/{s}"),
                    "domain=example.com",
                )
            })
            .collect();
        agent
            .report(vec![batch(Some(SESSION), logs)])
            .await
            .unwrap();
    }
    let hostile = wire::BoundaryLog {
        allowed: false,
        time: Some(event_time()),
        resource: Some(boundary_log::Resource::HttpRequest(
            boundary_log::HttpRequest {
                method: "GET".into(),
                url: HOSTILE.into(),
                matched_rule: String::new(),
            },
        )),
        sequence_number: 50,
    };
    agent
        .report(vec![batch(Some(SESSION), vec![hostile])])
        .await
        .unwrap();
    51
}

/// The record ids of the messages (`id="N"`), each once.
fn ids(lines: &[String]) -> BTreeSet<i64> {
    let ids: Vec<i64> = lines
        .iter()
        .map(|line| {
            let start = line
                .find(" id=\"")
                .unwrap_or_else(|| panic!("no id in {line}"))
                + 5;
            line[start..start + line[start..].find('"').unwrap()]
                .parse()
                .unwrap()
        })
        .collect();
    let set: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(set.len(), ids.len(), "repeated messages: {ids:?}");
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_receives_every_record_as_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(dir.path()).await;
    let url = format!("tcp://127.0.0.1:{}", rsyslog.port);
    let server = Server::start_with(
        syslog_config(dir.path(), url, None),
        dir.path(),
        Capture::new(),
    )
    .await;
    let n = report(&server).await;
    let lines = rsyslog.wait_for_lines(n).await;
    assert_eq!(ids(&lines), (1..=n as i64).collect());
    for line in &lines {
        assert!(
            line.starts_with("warden boundary [warden@32473 id=\""),
            "{line}"
        );
        assert!(line.contains(&format!(" session=\"{SESSION}\"")), "{line}");
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
    }
    let allowed = lines.iter().find(|l| l.contains(" id=\"1\"")).unwrap();
    assert!(
        allowed.contains(" decision=\"allow\" method=\"GET\" url=\"https://example.com/0\""),
        "{allowed}"
    );
    assert!(
        allowed.contains(" rule=\"domain=example.com\""),
        "{allowed}"
    );
    assert!(
        allowed.ends_with("] allow \"GET\" \"https://example.com/0\""),
        "{allowed}"
    );
    // The hostile URL: one message, its control characters written out,
    // its quotes, backslash and bracket escaped inside the structured data.
    let hostile = lines.iter().find(|l| l.contains(" id=\"51\"")).unwrap();
    assert!(
        hostile.contains(r#" url="https://evil.example/a\\n<13>1 2025-01-01T00:00:00Z h forged - - - injected\\r\\n\\x1b[31mred\] \\\"x\\\" \\\\""#),
        "{hostile}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("forged") || l.contains(" forged - - - injected\n"))
    );
    server.stop().await.unwrap();
    drop(rsyslog);
}

/// The collector is down when the records arrive: the sink fails, backs
/// off and retries, and once rsyslog listens every record arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_was_down_gets_every_record_once_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on (taken from the kernel, then freed).
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let url = format!("tcp://127.0.0.1:{port}");
    let server = Server::start_with(
        syslog_config(dir.path(), url, None),
        dir.path(),
        Capture::new(),
    )
    .await;
    let n = report(&server).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let metrics = server.get("/metrics").await.1;
        let failures =
            metric(&metrics, "warden_export_failures_total{sink=\"syslog\"}").unwrap_or(0.0);
        let lag = metric(&metrics, "warden_export_lag_records{sink=\"syslog\"}").unwrap_or(0.0);
        if failures >= 1.0 && lag >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failure or lag counted: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rsyslog = Rsyslog::start_on(dir.path(), port).await;
    let lines = rsyslog.wait_for_lines(n).await;
    assert_eq!(ids(&lines), (1..=n as i64).collect());
    server.stop().await.unwrap();
    drop(rsyslog);
}

/// A TLS syslog collector in the test: reads octet-counted frames.
async fn tls_collector(dir: &Path) -> (u16, Arc<Mutex<Vec<String>>>) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let tls = warden_server::tls::server_config(&TlsFiles {
        cert: data.join("server.pem"),
        key: data.join("server.key"),
    })
    .unwrap();
    let _ = dir;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let messages = Arc::new(Mutex::new(Vec::new()));
    let got = Arc::clone(&messages);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let got = Arc::clone(&got);
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                loop {
                    let mut count = Vec::new();
                    if reader.read_until(b' ', &mut count).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let len: usize = std::str::from_utf8(&count[..count.len() - 1])
                        .unwrap()
                        .parse()
                        .unwrap();
                    let mut message = vec![0; len];
                    reader.read_exact(&mut message).await.unwrap();
                    got.lock()
                        .unwrap()
                        .push(String::from_utf8(message).unwrap());
                }
            });
        }
    });
    (port, messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_collector_gets_octet_counted_rfc5424_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (port, messages) = tls_collector(dir.path()).await;
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ca.pem");
    let url = format!("tls://localhost:{port}");
    let server = Server::start_with(
        syslog_config(dir.path(), url, Some(ca)),
        dir.path(),
        Capture::new(),
    )
    .await;
    let n = report(&server).await;
    let deadline = Instant::now() + DEADLINE;
    while messages.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "waited for {n} messages");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let messages = messages.lock().unwrap().clone();
    assert_eq!(ids(&messages), (1..=n as i64).collect());
    for m in &messages {
        // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD]
        let fields: Vec<&str> = m.splitn(7, ' ').collect();
        assert!(fields[0] == "<110>1" || fields[0] == "<108>1", "{m}");
        assert_eq!(fields[1], "2025-12-08T20:58:46.093456Z");
        assert_eq!((fields[3], fields[5]), ("warden", "boundary"));
        assert!(fields[6].starts_with("[warden@32473 id=\""), "{m}");
        assert!(!m.chars().any(|c| c.is_control()), "{m:?}");
    }
    server.stop().await.unwrap();
}
