//! TLS errors in words with the fix: a server whose certificate is a CA
//! certificate (what `openssl req -x509` makes) and one signed by a CA the
//! client does not trust, as `warden workspace list` reports them.

mod support;

use std::ffi::OsString;

use support::dirs;
use support::process::BoundaryLines;
use support::server::ServerProcess;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../server/tests/data")
        .join(name)
}

async fn list_error(server: &ServerProcess, ca: Option<&std::path::Path>) -> String {
    let mut args = vec!["list"];
    if let Some(ca) = ca {
        args.extend(["--ca-cert", ca.to_str().unwrap()]);
    }
    let output = server.workspace(&args).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches('\n').count(), 1, "one line: {stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_problems_are_said_in_words_with_the_fix() {
    let dirs = dirs();
    // A self-signed CA certificate used as the server's own.
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_file, key_file) = (
        dirs.root.join("ca-as-server.pem"),
        dirs.root.join("ca-as-server.key"),
    );
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let tls: Vec<OsString> = vec![
        "--tls-cert".into(),
        cert_file.clone().into(),
        "--tls-key".into(),
        key_file.into(),
    ];
    let mut server = ServerProcess::start(&dirs.server, &tls, BoundaryLines::Count).await;
    let e = list_error(&server, Some(&cert_file)).await;
    assert!(e.contains("presents a CA certificate as its own"), "{e}");
    assert!(e.contains("docs/security.md"), "{e}");
    server.stop().await;

    // A proper server certificate, but the client was not given its CA.
    let dirs = support::dirs();
    let tls: Vec<OsString> = vec![
        "--tls-cert".into(),
        fixture("server.pem").into(),
        "--tls-key".into(),
        fixture("server.key").into(),
    ];
    let mut server = ServerProcess::start(&dirs.server, &tls, BoundaryLines::Count).await;
    let e = list_error(&server, None).await;
    assert!(
        e.contains(
            "not signed by a CA this client trusts: give the CA that signed it with --ca-cert"
        ),
        "{e}"
    );
    // With its CA it works.
    let ok = server
        .workspace(&["list", "--ca-cert", fixture("ca.pem").to_str().unwrap()])
        .await;
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    server.stop().await;
}
