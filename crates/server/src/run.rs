//! Starting, running and stopping the control plane, in a fixed order.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, check_listen};
use crate::grpc::{self, AgentService};
use crate::http::{self, AppState};
use crate::ingest::Ingestor;
use crate::line::{LineSink, Printer};
use crate::metrics::Metrics;
use crate::{ServerError, admin_token, outbox, serve, tls};

/// Runs the control plane on `listener` until `shutdown` is cancelled.
///
/// Start: load TLS, open the store, settle the admin token, print the lines
/// a crash left unprinted, then serve. Stop: stop accepting, let open calls
/// finish (up to the grace period), wait for commits in flight, print their
/// lines, close the store. Boundary lines go to `lines`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    lines: Arc<dyn LineSink>,
) -> Result<(), ServerError> {
    let addr = listener.local_addr().map_err(|cause| ServerError::Io {
        context: "reading the listening address".into(),
        cause,
    })?;
    check_listen(addr, config.tls.is_some(), config.insecure_listen)?;
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;

    let store = warden_store::open(&config.database).await?;
    let result = serve_with(config, listener, shutdown, lines, Arc::clone(&store), tls).await;
    if let Err(e) = store.close().await {
        tracing::warn!(error = %e, "closing the store failed");
    }
    result
}

async fn serve_with(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    lines: Arc<dyn LineSink>,
    store: Arc<dyn warden_store::Store>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<(), ServerError> {
    let admin_token = admin_token::settle(&*store, &config.admin_token).await?;
    let metrics = Arc::new(Metrics::new());
    let printer = Printer::start(lines, Arc::clone(&store), Arc::clone(&metrics));
    let queue = printer.queue();
    if let Err(e) = outbox::replay(&*store, &queue, config.log_format).await {
        drop(queue);
        printer.shutdown().await;
        return Err(e.into());
    }

    let ingestor = Arc::new(Ingestor::new(
        Arc::clone(&store),
        queue,
        config.log_format,
        Arc::clone(&metrics),
    ));
    let agent_api = AgentService::new(Arc::clone(&store), Arc::clone(&ingestor), config.limits);
    let grpc_routes = tonic::service::Routes::new(agent_api.into_server())
        .prepare()
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&metrics),
            grpc::observe,
        ));
    let app = grpc_routes.merge(http::router(Arc::new(AppState {
        store: Arc::clone(&store),
        metrics: Arc::clone(&metrics),
        admin_token,
        shutdown: shutdown.clone(),
    })));

    serve::serve(listener, app, tls, shutdown, config.shutdown_grace).await;
    tracing::info!("stopped accepting; finishing commits in flight");
    ingestor.drain().await;
    // The app (and with it the ingestor's print queue) is gone once serving
    // ended and the commits drained; the printer can finish.
    drop(ingestor);
    printer.shutdown().await;
    tracing::info!("control plane stopped");
    Ok(())
}
