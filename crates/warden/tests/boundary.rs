//! `warden boundary` with real clients, on loopback only: curl (HTTP,
//! HTTPS through a tunnel and intercepted, HTTP/2, the 403 body), Python's
//! urllib, `git clone` over intercepted HTTPS, streaming both ways,
//! WebSocket upgrades, spoofed Host and SNI, exit codes, bad rules; the
//! records at the control plane (decisions, rules, session, sequence) and
//! on the agent socket (policy digest, policy text); the jail.

mod support;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use support::WAIT;
use support::origin::{Origin, TestCa, require};
use support::process::{BoundaryLines, WardenProcess, warden};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const LISTENING: &str = "warden boundary proxy listening on http://";

/// Runs `warden boundary ARGS -- sh -c SCRIPT` to the end.
async fn boundary(args: &[&str], script: &str) -> Output {
    let mut command = warden();
    command
        .arg("boundary")
        .args(args)
        .args(["--", "sh", "-c", script])
        .kill_on_drop(true);
    tokio::time::timeout(WAIT, command.output())
        .await
        .expect("warden boundary finished in time")
        .expect("running warden boundary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// `warden boundary ARGS` without COMMAND, and the address it listens on.
async fn start(args: &[&str]) -> (WardenProcess, String) {
    let mut command = warden();
    command.arg("boundary").args(args);
    let mut process = WardenProcess::spawn("warden boundary", command, BoundaryLines::Keep);
    let line = process.wait_line(LISTENING).await;
    let address = line.split_once(LISTENING).unwrap().1.trim().to_owned();
    (process, address)
}

#[tokio::test]
async fn curl_through_the_proxy_plain_http_allowed_and_denied_with_a_403_body() {
    require("curl", "curl");
    let origin = Origin::http(None).await;
    let port = origin.port();
    let script = format!(
        "curl -sS http://127.0.0.1:{port}/a?q=1; \
         curl -sS -i -X POST --data x http://127.0.0.1:{port}/upload; \
         curl -sS -o /dev/null -w 'other-host %{{http_code}}\\n' http://localhost:{port}/; \
         exit 7"
    );
    let output = boundary(&["--allow", "domain=127.0.0.1 method=GET"], &script).await;
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(7),
        "COMMAND's exit code: {}",
        show(&output)
    );
    assert!(
        stdout.contains(&format!("origin-ok GET /a?q=1 host=127.0.0.1:{port}")),
        "{}",
        show(&output)
    );
    // The denial: 403, the header, the request named, the rule suggested.
    assert!(
        stdout.contains("HTTP/1.1 403 Forbidden"),
        "{}",
        show(&output)
    );
    assert!(
        stdout.contains("x-warden-decision: deny"),
        "{}",
        show(&output)
    );
    assert!(
        stdout.contains(&format!("denied POST http://127.0.0.1:{port}/upload")),
        "{}",
        show(&output)
    );
    assert!(
        stdout.contains("--allow 'domain=127.0.0.1 method=POST path=/upload'"),
        "{}",
        show(&output)
    );
    assert!(stdout.contains("other-host 403"), "{}", show(&output));
    // The origin saw only the allowed request.
    let seen = origin.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    // Local lines: DENY at warn (shown by default), ALLOW at info (not).
    assert!(
        stderr.contains("DENY") && stderr.contains("method=\"POST\""),
        "{stderr}"
    );
    assert!(!stderr.contains("ALLOW"), "{stderr}");
    assert!(stderr.contains("policy digest"), "{stderr}");
    assert!(stderr.contains("not forwarded"), "said once: {stderr}");
    assert_eq!(
        stderr.matches("not forwarded as records").count(),
        1,
        "{stderr}"
    );

    let output = boundary(
        &["--allow", "domain=127.0.0.1", "--log-level", "info"],
        &format!("curl -sS -o /dev/null http://127.0.0.1:{port}/b"),
    )
    .await;
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("ALLOW") && stderr.contains("rule=\"domain=127.0.0.1\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn curl_https_through_a_tunnel_and_a_denied_connect() {
    require("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let origin = Origin::https(&ca, None).await;
    let port = origin.port();
    let cacert = ca.pem_path.display();
    let script = format!(
        "curl -sS --cacert {cacert} https://localhost:{port}/secure; \
         curl -sS --cacert {cacert} https://127.0.0.1:{port}/ 2>&1; echo \" curl=$?\""
    );
    let output = boundary(&["--allow", "domain=localhost"], &script).await;
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(
        stdout.contains("origin-ok GET /secure"),
        "{}",
        show(&output)
    );
    // curl reports the refused CONNECT (exit 56).
    assert!(
        stdout.contains("403") && stdout.contains("curl=56"),
        "{}",
        show(&output)
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("DENY") && stderr.contains("CONNECT"),
        "{stderr}"
    );
}

#[tokio::test]
async fn curl_https_intercepted_decides_every_request_over_http1_and_http2() {
    require("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let origin = Origin::https(&ca, None).await;
    let port = origin.port();
    let script = format!(
        "curl -sS --http1.1 https://localhost:{port}/ok/1; \
         curl -sS --http2 -o /dev/null -w 'h2 %{{http_version}} %{{http_code}}\\n' https://localhost:{port}/ok/2; \
         curl -sS -i --http1.1 https://localhost:{port}/private; \
         test -s \"$SSL_CERT_FILE\" && test \"$CURL_CA_BUNDLE\" = \"$GIT_SSL_CAINFO\" && echo bundle-set"
    );
    let upstream_ca = ca.pem_path.to_str().unwrap();
    let output = boundary(
        &[
            "--tls-intercept",
            "--upstream-ca",
            upstream_ca,
            "--allow",
            "domain=localhost method=GET path=/ok/*",
        ],
        &script,
    )
    .await;
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(stdout.contains("origin-ok GET /ok/1"), "{}", show(&output));
    assert!(
        stdout.contains("h2 2 200"),
        "HTTP/2 to the client: {}",
        show(&output)
    );
    assert!(stdout.contains("403 Forbidden"), "{}", show(&output));
    assert!(
        stdout.contains(&format!("denied GET https://localhost:{port}/private")),
        "{}",
        show(&output)
    );
    assert!(stdout.contains("bundle-set"), "{}", show(&output));
    let targets: Vec<String> = origin.requests().into_iter().map(|s| s.target).collect();
    assert_eq!(targets, ["/ok/1", "/ok/2"]);
}

#[tokio::test]
async fn python_urllib_goes_through_plain_and_intercepted() {
    require("python3", "python3");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let http = Origin::http(None).await;
    let https = Origin::https(&ca, None).await;
    let script = format!(
        "python3 - <<'EOF'\n\
import urllib.request, urllib.error\n\
print(urllib.request.urlopen('http://127.0.0.1:{}/py').read().decode().strip())\n\
print(urllib.request.urlopen('https://localhost:{}/pys').read().decode().strip())\n\
try:\n    urllib.request.urlopen('https://localhost:{}/denied')\n\
except urllib.error.HTTPError as e:\n    print('denied', e.code, e.headers['x-warden-decision'])\n\
EOF",
        http.port(),
        https.port(),
        https.port()
    );
    let output = boundary(
        &[
            "--tls-intercept",
            "--upstream-ca",
            ca.pem_path.to_str().unwrap(),
            "--allow",
            "domain=127.0.0.1",
            "--allow",
            "domain=localhost path=/pys",
        ],
        &script,
    )
    .await;
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(stdout.contains("origin-ok GET /py"), "{}", show(&output));
    assert!(stdout.contains("origin-ok GET /pys"), "{}", show(&output));
    assert!(stdout.contains("denied 403 deny"), "{}", show(&output));
}

#[tokio::test]
async fn git_clones_over_intercepted_https() {
    require("git", "git");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    // A repository served the dumb-HTTP way: static files over TLS.
    let work = dir.path().join("work");
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let git = |args: &[&str], cwd: &Path| {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q", work.to_str().unwrap()], dir.path());
    std::fs::write(work.join("README"), "fenced in\n").unwrap();
    git(&["add", "README"], &work);
    git(&["commit", "-q", "-m", "first"], &work);
    git(
        &["clone", "-q", "--bare", work.to_str().unwrap(), "repo.git"],
        &served,
    );
    git(&["update-server-info"], &served.join("repo.git"));
    let origin = Origin::https(&ca, Some(served)).await;
    let clone = dir.path().join("clone");
    let script = format!(
        "git clone -q https://localhost:{}/repo.git {} && cat {}/README",
        origin.port(),
        clone.display(),
        clone.display()
    );
    let output = boundary(
        &[
            "--tls-intercept",
            "--upstream-ca",
            ca.pem_path.to_str().unwrap(),
            "--allow",
            "domain=localhost method=GET path=/repo.git/*",
        ],
        &script,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(
        text(&output.stdout).contains("fenced in"),
        "{}",
        show(&output)
    );
    assert!(origin.requests().iter().all(|s| s.method == "GET"));
}

#[tokio::test]
async fn bodies_stream_and_websocket_upgrades_pass_when_allowed() {
    let origin = Origin::http(None).await;
    let port = origin.port();
    let (mut proxy, address) = start(&["--allow", "domain=127.0.0.1"]).await;

    // The response's first part arrives before the origin sends the rest.
    let stream = TcpStream::connect(&address).await.unwrap();
    let mut stream = BufReader::new(stream);
    let request =
        format!("GET http://127.0.0.1:{port}/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    tokio::time::timeout(WAIT, async {
        loop {
            line.clear();
            stream.read_line(&mut line).await.unwrap();
            if line.contains("first-part") {
                break;
            }
            assert!(!line.is_empty(), "connection closed before the first part");
        }
    })
    .await
    .expect("the first part arrived while the origin held the second");
    origin.release.notify_one();
    tokio::time::timeout(WAIT, async {
        loop {
            line.clear();
            stream.read_line(&mut line).await.unwrap();
            if line.contains("second-part") {
                break;
            }
        }
    })
    .await
    .expect("the second part arrived");

    // An upload larger than any buffer goes through whole.
    let mut upload = TcpStream::connect(&address).await.unwrap();
    let size = 8 * 1024 * 1024;
    let head = format!(
        "POST http://127.0.0.1:{port}/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    upload.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..size / chunk.len() {
        upload.write_all(&chunk).await.unwrap();
    }
    let mut answer = String::new();
    upload.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.contains(&format!("received {size} bytes")),
        "{answer}"
    );

    // A WebSocket-style upgrade, then bytes both ways.
    let mut ws = TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "GET http://127.0.0.1:{port}/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
    ws.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        ws.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(text(&head).starts_with("HTTP/1.1 101"), "{}", text(&head));
    ws.write_all(b"ping through the proxy").await.unwrap();
    let mut echo = [0u8; 22];
    tokio::time::timeout(WAIT, ws.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping through the proxy");
    proxy.stop().await;
}

/// A TLS client whose server name is `sni`, through `CONNECT target`.
async fn tls_through_connect(
    proxy: &str,
    target: &str,
    sni: &str,
    ca: &Path,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(connect.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = text(&head);
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head);
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    connector
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())
}

use rustls::pki_types::pem::PemObject;

#[tokio::test]
async fn a_spoofed_host_header_or_tls_server_name_is_denied() {
    require("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let https = Origin::https(&ca, None).await;
    let http = Origin::http(None).await;

    // Plain HTTP: the Host header names another host than the URL.
    let (mut proxy, address) =
        start(&["--allow", "domain=127.0.0.1", "--allow", "domain=localhost"]).await;
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "GET http://127.0.0.1:{}/ HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
        http.port()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("Host \"evil.test\" does not match"),
        "{answer}"
    );

    // A tunnel (not intercepted): CONNECT names an allowed host, the TLS
    // server name another one the origin would also serve.
    let target = format!("localhost:{}", https.port());
    let spoofed = tls_through_connect(&address, &target, "origin.test", &ca.pem_path).await;
    assert!(
        spoofed.is_err(),
        "the tunnel must close on the spoofed name"
    );
    let honest = tls_through_connect(&address, &target, "localhost", &ca.pem_path).await;
    assert!(honest.is_ok(), "{honest:?}");
    drop(honest);
    proxy
        .wait_line("TLS server name \\\"origin.test\\\" does not match the CONNECT target")
        .await;
    assert!(
        http.requests().is_empty(),
        "the spoofed request never reached the origin"
    );
    proxy.stop().await;

    // Intercepted: the SNI and, per request, the Host header.
    let upstream_ca = ca.pem_path.to_str().unwrap();
    let (mut proxy, address) = start(&[
        "--tls-intercept",
        "--upstream-ca",
        upstream_ca,
        "--allow",
        "domain=localhost",
    ])
    .await;
    let spoofed = tls_through_connect(&address, &target, "origin.test", &ca.pem_path).await;
    assert!(spoofed.is_err());
    proxy.wait_line("TLS server name").await;
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "-i", "-x", &format!("http://{address}")])
        .args(["--proxy-cacert", upstream_ca])
        .args(["-k", "--http1.1", "-H", "Host: origin.test"])
        .arg(format!("https://localhost:{}/spoof", https.port()))
        .output()
        .await
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("403 Forbidden"),
        "{stdout} {}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("does not match the CONNECT target"),
        "{stdout}"
    );
    assert!(https.requests().iter().all(|s| s.target != "/spoof"));
    proxy.stop().await;
}

#[tokio::test]
async fn link_local_and_metadata_literals_are_denied_without_a_packet() {
    require("curl", "curl");
    // The proxy must answer 403 itself; nothing is dialed (a dial to this
    // address from a test machine would leave loopback).
    let script = "curl -sS -m 20 http://169.254.169.254/latest/meta-data/; \
                  curl -sS -m 20 http://[fd00:ec2::254]/latest/";
    let output = boundary(&["--allow", "domain=*"], script).await;
    let stdout = text(&output.stdout);
    assert_eq!(
        stdout.matches("link-local or metadata address").count(),
        2,
        "{}",
        show(&output)
    );
    // The dry run says the same.
    let check = warden()
        .args([
            "boundary",
            "check",
            "--allow",
            "domain=*",
            "GET",
            "http://169.254.169.254/",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    assert_eq!(text(&check.stdout).trim(), "deny");
}

#[tokio::test]
async fn check_prints_the_decision_and_bad_rules_exit_2_before_anything_starts() {
    let check = |args: &'static [&'static str]| async move {
        let output = warden()
            .arg("boundary")
            .arg("check")
            .args(args)
            .output()
            .await
            .unwrap();
        (
            output.status.code(),
            text(&output.stdout),
            text(&output.stderr),
        )
    };
    let (code, out, _) = check(&[
        "--allow",
        "domain=*.npmjs.org method=GET,HEAD",
        "GET",
        "registry.npmjs.org/x",
    ])
    .await;
    assert_eq!(
        (code, out.trim()),
        (Some(0), "allow domain=*.npmjs.org method=GET,HEAD")
    );
    let (code, out, _) = check(&[
        "--deny",
        "domain=gist.github.com",
        "--allow",
        "domain=*",
        "GET",
        "https://gist.github.com/",
    ])
    .await;
    assert_eq!((code, out.trim()), (Some(1), "deny domain=gist.github.com"));
    let (code, out, _) = check(&[
        "--allow",
        "domain=github.com",
        "POST",
        "https://api.github.com/",
    ])
    .await;
    assert_eq!((code, out.trim()), (Some(1), "deny"));
    let (code, _, err) =
        check(&["--allow", "domain=gith*b.com", "GET", "https://github.com/"]).await;
    assert_eq!(code, Some(2));
    assert!(
        err.contains("\"domain=gith*b.com\"") && err.contains("a * must be a whole label"),
        "{err}"
    );
    let (code, _, _) = check(&["GET"]).await;
    assert_eq!(code, Some(2));

    // The proxy refuses a bad rule before listening or running COMMAND.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let output = boundary(
        &["--allow", "path=/a*b"],
        &format!("touch {}", marker.display()),
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    assert!(
        text(&output.stderr).contains("\"path=/a*b\""),
        "{}",
        show(&output)
    );
    assert!(!text(&output.stderr).contains("listening"));
    assert!(!marker.exists(), "COMMAND must not run");
    // A killed COMMAND: 128 + the signal.
    let output = boundary(&["--allow", "domain=*"], "kill -9 $$").await;
    assert_eq!(output.status.code(), Some(137), "{}", show(&output));
}

/// The frames a fake agent reads on its socket.
async fn fake_agent(
    path: &Path,
) -> tokio::sync::mpsc::UnboundedReceiver<warden_proto::codec::Frame> {
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                loop {
                    let mut header = [0u8; 4];
                    if stream.read_exact(&mut header).await.is_err() {
                        return;
                    }
                    let Ok((tag, len)) = warden_proto::codec::parse_header(header) else {
                        return;
                    };
                    let mut payload = vec![0u8; len];
                    if stream.read_exact(&mut payload).await.is_err() {
                        return;
                    }
                    if tag.is_extension() {
                        // Answer like a reference agent: close on the
                        // acknowledgement request.
                        return;
                    }
                    if let Ok(frame) = warden_proto::codec::decode_payload(tag, payload.into()) {
                        let _ = tx.send(frame.frame);
                    }
                }
            });
        }
    });
    rx
}

#[tokio::test]
async fn the_policy_digest_rides_on_every_frame_and_the_policy_once_per_session() {
    require("curl", "curl");
    use warden_proto::codec::Frame;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let mut frames = fake_agent(&socket).await;
    let origin = Origin::http(None).await;
    let port = origin.port();
    let script = format!(
        "for i in 1 2 3; do curl -s -o /dev/null http://127.0.0.1:{port}/$i; done; curl -s -o /dev/null -X DELETE http://127.0.0.1:{port}/x"
    );
    let output = boundary(
        &[
            "--log-proxy-socket-path",
            socket.to_str().unwrap(),
            "--deny",
            "method=DELETE",
            "--allow",
            "domain=127.0.0.1",
        ],
        &script,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let stderr = text(&output.stderr);
    let digest = stderr
        .split("policy digest ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the digest is printed at start")
        .to_owned();
    // printf 'deny method=DELETE\nallow domain=127.0.0.1' | sha256sum
    assert_eq!(
        digest,
        "2728fb7a193d80cf667ee60f093af07233713fcf1f2bb21c7937872da8e82da2"
    );
    let mut logs: Vec<warden_proto::wire::ReportBoundaryLogsRequest> = Vec::new();
    let mut policies = Vec::new();
    // The fake agent may still be reading what the client wrote before it
    // exited: take frames until the four records and the policy are in, then
    // whatever else is already there.
    let complete = |logs: &[warden_proto::wire::ReportBoundaryLogsRequest], policies: usize| {
        policies > 0 && logs.iter().map(|l| l.logs.len()).sum::<usize>() >= 4
    };
    loop {
        let frame = if complete(&logs, policies.len()) {
            match frames.try_recv() {
                Ok(frame) => frame,
                Err(_) => break,
            }
        } else {
            tokio::time::timeout(std::time::Duration::from_secs(10), frames.recv())
                .await
                .expect("the client's frames within 10 s")
                .expect("the fake agent is still running")
        };
        match frame {
            Frame::Logs(request) => logs.push(request),
            Frame::Status(status) if !status.policy_digest.is_empty() => policies.push(status),
            _ => {}
        }
    }
    assert!(!logs.is_empty());
    assert!(logs.iter().all(|l| l.policy_digest == digest), "{logs:?}");
    assert_eq!(policies.len(), 1, "{policies:?}");
    assert_eq!(
        policies[0].policy,
        "deny method=DELETE\nallow domain=127.0.0.1"
    );
    let records: Vec<_> = logs.iter().flat_map(|l| l.logs.iter()).collect();
    let seqs: Vec<i32> = records.iter().map(|r| r.sequence_number).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
    assert!(
        logs.iter()
            .all(|l| l.session_id == logs[0].session_id && !l.session_id.is_empty())
    );
    assert_eq!(logs[0].confined_process_name, "sh");
}

#[tokio::test]
async fn the_jail_stops_a_client_that_ignores_the_proxy_variables() {
    require("curl", "curl");
    let origin = Origin::http(None).await;
    let port = origin.port();
    let script = format!(
        "curl -sS -m 10 --noproxy '*' http://127.0.0.1:{port}/direct; echo \"direct=$?\"; \
         curl -sS -m 10 http://127.0.0.1:{port}/proxied; echo \"proxied=$?\""
    );
    let output = boundary(&["--jail", "--allow", "domain=127.0.0.1"], &script).await;
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    // Outside the proxy there is nothing to connect to (curl 7: refused).
    assert!(stdout.contains("direct=7"), "{}", show(&output));
    assert!(
        stdout.contains("origin-ok GET /proxied") && stdout.contains("proxied=0"),
        "{}",
        show(&output)
    );
    let targets: Vec<String> = origin.requests().into_iter().map(|s| s.target).collect();
    assert_eq!(targets, ["/proxied"]);
    // Without COMMAND there is nothing to jail.
    let output = warden()
        .args(["boundary", "--jail", "--allow", "domain=*"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
}

#[tokio::test]
async fn without_the_privileges_for_a_jail_command_never_runs() {
    require("setpriv", "util-linux");
    // The binary where an unprivileged user can run it.
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("warden");
    std::fs::copy(env!("CARGO_BIN_EXE_warden"), &exe).unwrap();
    let output = tokio::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&exe)
        .args([
            "boundary",
            "--jail",
            "--allow",
            "domain=*",
            "--",
            "echo",
            "UNCONFINED",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    assert!(
        text(&output.stderr).contains("--jail needs a new network and mount namespace"),
        "{}",
        show(&output)
    );
    assert!(
        !text(&output.stdout).contains("UNCONFINED"),
        "COMMAND ran unconfined"
    );
}

#[tokio::test]
async fn the_jail_hides_the_ca_directory_and_the_key_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let script = format!(
        "cat {0}/ca.key; echo \"cat=$?\"; ls -A {0} | wc -l; echo root-can-chmod; chmod 777 {0} 2>&1; echo \"chmod=$?\"",
        ca_dir.display()
    );
    let output = boundary(
        &[
            "--jail",
            "--tls-intercept",
            "--ca-dir",
            ca_dir.to_str().unwrap(),
            "--allow",
            "domain=*",
        ],
        &script,
    )
    .await;
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(!stdout.contains("PRIVATE KEY"), "{}", show(&output));
    assert!(stdout.contains("cat=1"), "{}", show(&output));
    assert!(
        !stdout.contains("chmod=0"),
        "COMMAND has no capabilities: {}",
        show(&output)
    );
    // Outside the jail the CA is there, the key for its owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ca_dir.join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(ca_dir.join("ca.key"))
            .unwrap()
            .contains("PRIVATE KEY")
    );
    // A second run reuses the same CA.
    let before = std::fs::read(ca_dir.join("ca.crt")).unwrap();
    let output = boundary(
        &["--tls-intercept", "--ca-dir", ca_dir.to_str().unwrap()],
        "cat \"$SSL_CERT_FILE\"",
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(
        text(&output.stdout).contains(text(&before).trim()),
        "{}",
        show(&output)
    );
}

#[tokio::test]
async fn the_records_reach_the_control_plane_with_decisions_rules_session_and_sequence() {
    use support::agent::AgentSetup;
    use support::server::ServerProcess;
    require("curl", "curl");
    let dirs = support::dirs();
    let mut server = ServerProcess::start(&dirs.server, &[], BoundaryLines::Keep).await;
    let ws = server.create_workspace("fenced", "alice", &[]).await;
    let mut agent = AgentSetup::new(&server.url, &ws.token, &dirs.agent, &dirs.socket)
        .start(&[])
        .await;
    let origin = Origin::http(None).await;
    let port = origin.port();
    let script = format!(
        "curl -s -o /dev/null http://127.0.0.1:{port}/one; \
         curl -s -o /dev/null -X POST http://127.0.0.1:{port}/two; \
         curl -s -o /dev/null http://localhost:{port}/three; \
         curl -s -o /dev/null http://127.0.0.1:{port}/blocked/four"
    );
    // The socket from the environment, as a COMMAND of the agent gets it.
    let mut command = warden();
    command
        .env("CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH", &dirs.socket)
        .args([
            "boundary",
            "--deny",
            "path=/blocked/*",
            "--allow",
            "domain=127.0.0.1 method=GET",
        ])
        .args(["--", "sh", "-c", &script]);
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("audit records:"),
        "the drain summary: {stderr}"
    );
    let digest = stderr
        .split("policy digest ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();

    let server_ref = &server;
    support::eventually("the four records are stored", || async move {
        server_ref.logs(&["--workspace", "fenced"]).await.len() >= 4
    })
    .await;
    let mut records = server.logs(&["--workspace", "fenced"]).await;
    records.sort_by_key(|r| r["sequence"].as_i64());
    let session = records[0]["session_id"].as_str().unwrap().to_owned();
    let shown: Vec<(i64, &str, &str, &str, &str)> = records
        .iter()
        .map(|r| {
            assert_eq!(r["session_id"], session.as_str());
            (
                r["sequence"].as_i64().unwrap(),
                r["decision"].as_str().unwrap(),
                r["http_method"].as_str().unwrap(),
                r["http_url"].as_str().unwrap(),
                r["matched_rule"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let url = |host: &str, path: &str| format!("http://{host}:{port}{path}");
    assert_eq!(
        shown,
        [
            (
                0,
                "allow",
                "GET",
                url("127.0.0.1", "/one").as_str(),
                "domain=127.0.0.1 method=GET"
            ),
            (1, "deny", "POST", url("127.0.0.1", "/two").as_str(), ""),
            (2, "deny", "GET", url("localhost", "/three").as_str(), ""),
            (
                3,
                "deny",
                "GET",
                url("127.0.0.1", "/blocked/four").as_str(),
                "path=/blocked/*"
            ),
        ]
    );
    // The session is the run's and the process that wrote the records is
    // warden itself.
    assert_eq!(records[0]["process"], "sh");
    assert!(records.iter().all(|r| r["workspace_name"] == "fenced"));
    // The stored record does not carry the digest yet (the control plane's
    // policy storage is another change); the frames do, see
    // the_policy_digest_rides_on_every_frame_and_the_policy_once_per_session.
    assert_eq!(digest.len(), 64);
    agent.stop().await;
    server.stop().await;
}
