//! TLS on the one port: gRPC and HTTP over rustls, with the test CA.

mod support;

use std::path::PathBuf;

use support::*;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use warden_api::ApiClient;
use warden_server::{LineFormat, TlsFiles};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[tokio::test]
async fn grpc_and_the_admin_api_work_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), LineFormat::Text);
    cfg.tls = Some(TlsFiles {
        cert: data("server.pem"),
        key: data("server.key"),
    });
    let server = Server::start_with(cfg, dir.path(), Capture::new()).await;
    let url = format!("https://localhost:{}", server.addr.port());

    let admin = ApiClient::new(&url, ADMIN_TOKEN, Some(&data("ca.pem"))).unwrap();
    let ws = admin
        .create_workspace(&warden_api::workspaces::CreateWorkspace {
            name: "dev".into(),
            owner: "alice".into(),
            agent_name: None,
            startup_script: None,
        })
        .await
        .unwrap();

    let ca = Certificate::from_pem(std::fs::read(data("ca.pem")).unwrap());
    let channel = Channel::from_shared(url.clone())
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(ca)
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut agent = Agent::over(channel, &ws.agent_token);
    agent.manifest().await.unwrap();
    agent
        .report(vec![batch(Some(SESSION), logs(0..2))])
        .await
        .unwrap();
    server.lines.wait_for(2).await;

    // Without the CA the client refuses the server; plain HTTP gets nothing.
    let untrusting = ApiClient::new(&url, ADMIN_TOKEN, Some(&data("server.pem")));
    assert!(untrusting.unwrap().list_workspaces().await.is_err());
    let plain = ApiClient::new(&server.url(), ADMIN_TOKEN, None).unwrap();
    assert!(plain.list_workspaces().await.is_err());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_tls_files_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (cert, key) in [
        (data("missing.pem"), data("server.key")),
        (data("server.pem"), data("ca.pem")),
        (data("server.key"), data("server.key")),
    ] {
        let mut cfg = config(dir.path(), LineFormat::Text);
        cfg.tls = Some(TlsFiles { cert, key });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = warden_server::run(
            cfg,
            listener,
            tokio_util::sync::CancellationToken::new(),
            std::sync::Arc::new(warden_server::WriterSink::new(Vec::new())),
        )
        .await
        .unwrap_err();
        assert!(err.is_config(), "{err}");
    }
}
