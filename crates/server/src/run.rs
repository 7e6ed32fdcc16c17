//! Starting, running and stopping the control plane, in a fixed order.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warden_store::Store;

use crate::agent_auth::AgentAuth;
use crate::completeness::{self, SessionWatch};
use crate::config::{Config, check_listen};
use crate::connections::Connections;
use crate::grpc::{self, AgentService};
use crate::http::{self, AppState};
use crate::ingest::Ingestor;
use crate::line::{LineSink, Printer};
use crate::metrics::Metrics;
use crate::{
    ServerError, admin_token, checkpoints, files, outbox, retention, selfcheck, serve, tls,
};

/// Runs the control plane on `listener` until `shutdown` is cancelled:
/// [`Server::start`], then [`Server::serve`].
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    lines: Arc<dyn LineSink>,
) -> Result<(), ServerError> {
    Server::start(config, listener, lines)
        .await?
        .serve(shutdown)
        .await
}

/// A control plane that is ready to serve: store open, admin token settled,
/// lines left over from a crash printed.
pub struct Server {
    config: Config,
    listener: TcpListener,
    addr: SocketAddr,
    store: Arc<dyn Store>,
    printer: Printer,
    ingestor: Arc<Ingestor>,
    metrics: Arc<Metrics>,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    connections: Arc<Connections>,
    /// Ends the HTTP responses that never finish on their own (record
    /// streams) once shutdown starts.
    streams: CancellationToken,
    /// Signs checkpoints and session verdicts.
    signing_key: Arc<warden_evidence::key::SigningKey>,
    /// The sessions ingest touched, for their verdicts.
    session_watch: Arc<SessionWatch>,
    /// The export sinks, checked, not started yet.
    sinks: Vec<(crate::export::SinkKind, crate::export::Sink)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Loads TLS, opens the store, settles the admin token and prints the
    /// lines a crash left unprinted. Once this returns, the admin token (and
    /// its file) exist, so a caller can announce the server.
    pub async fn start(
        config: Config,
        listener: TcpListener,
        lines: Arc<dyn LineSink>,
    ) -> Result<Server, ServerError> {
        let addr = listener.local_addr().map_err(|cause| ServerError::Io {
            context: "reading the listening address".into(),
            cause,
        })?;
        check_listen(addr, config.tls.is_some(), config.insecure_listen)?;
        config.connections.check()?;
        let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
        files::prepare_database(&config.database)?;
        let options = warden_store::StoreOptions {
            max_url_bytes: config.limits.max_url_bytes,
            ..warden_store::StoreOptions::default()
        };
        let store = warden_store::open_with(&config.database, options).await?;
        match Self::prepare(config, listener, addr, lines, Arc::clone(&store), tls).await {
            Ok(server) => Ok(server),
            Err(e) => {
                if let Err(close) = store.close().await {
                    tracing::warn!(error = %close, "closing the store failed");
                }
                Err(e)
            }
        }
    }

    async fn prepare(
        config: Config,
        listener: TcpListener,
        addr: SocketAddr,
        lines: Arc<dyn LineSink>,
        store: Arc<dyn Store>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Server, ServerError> {
        let sinks = crate::export::sinks(&config.exports).map_err(ServerError::Config)?;
        let admin_token = admin_token::settle(&*store, &config.admin_token).await?;
        let signing_key = Arc::new(load_signing_key(&config)?);
        if let Some(path) = &config.previous_signing_key {
            let (previous, _) = warden_evidence::key::SigningKey::load(path, false)
                .map_err(|e| ServerError::Config(format!("previous signing key: {e}")))?;
            crate::rotation::introduce(&*store, &previous, &signing_key).await?;
        }
        let session_key = store
            .init_web_session_key(crate::web::session::new_key())
            .await?;
        let sessions = crate::web::session::Sessions::new(session_key, tls.is_some());
        let metrics = Arc::new(Metrics::new());
        let printer = Printer::start(lines, Arc::clone(&store), Arc::clone(&metrics));
        let queue = printer.queue();
        if let Err(e) = outbox::replay(&*store, &queue, config.log_format).await {
            printer.shutdown().await;
            return Err(e.into());
        }
        let session_watch = SessionWatch::new();
        let ingestor = Arc::new(
            Ingestor::new(
                Arc::clone(&store),
                queue,
                config.log_format,
                Arc::clone(&metrics),
            )
            .with_max_url_bytes(config.limits.max_url_bytes)
            .with_session_watch(Arc::clone(&session_watch)),
        );
        let agent_api = AgentService::new(Arc::clone(&store), Arc::clone(&ingestor), config.limits);
        // The token is checked before the body is read.
        let agent_api = AgentAuth::new(agent_api.into_server(), Arc::clone(&store), admin_token);
        let grpc_routes = tonic::service::Routes::new(agent_api)
            .prepare()
            .into_axum_router()
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&metrics),
                grpc::observe,
            ));
        let streams = CancellationToken::new();
        let state = Arc::new(AppState {
            store: Arc::clone(&store),
            metrics: Arc::clone(&metrics),
            admin_token,
            signing_key: Arc::clone(&signing_key),
            token_use: crate::access::UseNotes::default(),
            sessions,
            shutdown: streams.clone(),
            max_response_bytes: config.max_response_bytes,
        });
        let app = grpc_routes
            .merge(http::router(Arc::clone(&state)))
            .merge(crate::web::router(state))
            // Last, so they apply to every route: JSON errors for paths no
            // route serves (tonic's fallback answered them with an empty
            // gRPC error and 200) and for methods a path does not take.
            .fallback(http::not_found)
            .method_not_allowed_fallback(http::method_not_allowed);
        let connections = Connections::new(config.connections, Arc::clone(&metrics.connections));
        Ok(Server {
            config,
            listener,
            addr,
            store,
            printer,
            ingestor,
            metrics,
            app,
            tls,
            connections,
            streams,
            signing_key,
            session_watch,
            sinks,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`, or `https://` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Serves until `shutdown`, then stops in order: stop accepting, let
    /// open calls finish (up to the grace period), wait for commits in
    /// flight, print their lines, close the store.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let Server {
            config,
            listener,
            store,
            printer,
            ingestor,
            metrics,
            app,
            tls,
            connections,
            streams,
            signing_key,
            session_watch,
            sinks,
            ..
        } = self;
        let judge = tokio::spawn(completeness::run(
            Arc::clone(&store),
            Arc::clone(&signing_key),
            session_watch,
            config.session_idle,
            Arc::clone(&metrics),
            shutdown.child_token(),
        ));
        let selfcheck = tokio::spawn(selfcheck::run(
            Arc::clone(&store),
            Arc::clone(&metrics),
            shutdown.child_token(),
        ));
        let exporters = crate::export::spawn(
            Arc::clone(&store),
            sinks,
            &config.exports,
            Arc::clone(&metrics.exports),
            shutdown.child_token(),
        );
        let signer = tokio::spawn(checkpoints::run(
            Arc::clone(&store),
            signing_key,
            Arc::clone(&metrics),
            shutdown.child_token(),
        ));
        let retention = config.retention.map(|keep| {
            tokio::spawn(retention::run(
                Arc::clone(&store),
                keep,
                Arc::clone(&metrics.retention),
                shutdown.child_token(),
            ))
        });
        let stop_streams = shutdown.clone();
        tokio::spawn(async move {
            stop_streams.cancelled().await;
            streams.cancel();
        });
        serve::serve(
            listener,
            app,
            tls,
            connections,
            shutdown,
            config.shutdown_grace,
        )
        .await;
        tracing::info!("stopped accepting; finishing commits in flight");
        ingestor.drain().await;
        drop(ingestor);
        printer.shutdown().await;
        if let Err(e) = selfcheck.await {
            tracing::error!(error = %e, "the chain self-check task failed");
        }
        if let Err(e) = judge.await {
            tracing::error!(error = %e, "the session verdict task failed");
        }
        // Signs the last commits once more before the store closes.
        if let Err(e) = signer.await {
            tracing::error!(error = %e, "the checkpoint task failed");
        }
        // Stops between passes once shutdown began.
        if let Some(task) = retention
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the retention task failed");
        }
        for exporter in exporters {
            if let Err(e) = exporter.await {
                tracing::error!(error = %e, "an export task failed");
            }
        }
        let closed = store.close().await;
        tracing::info!("control plane stopped");
        closed.map_err(ServerError::from)
    }
}

/// The checkpoint signing key (see [`Config::signing_key`]); its
/// fingerprint is logged so that operators can hand it to auditors.
fn load_signing_key(config: &Config) -> Result<warden_evidence::key::SigningKey, ServerError> {
    use warden_evidence::key::SigningKey;
    let failed =
        |e: warden_evidence::EvidenceError| ServerError::Config(format!("signing key: {e}"));
    let key = match &config.signing_key {
        Some((path, create)) => {
            let (key, created) = SigningKey::load(path, *create).map_err(failed)?;
            if created {
                tracing::info!(path = %path.display(), "generated the checkpoint signing key");
            }
            key
        }
        None => {
            tracing::warn!(
                "no signing key file: checkpoints are signed with a key for this run only"
            );
            SigningKey::generate().map_err(failed)?.0
        }
    };
    let public = key.public_key();
    tracing::info!(
        key_id = %public.key_id(),
        "signing checkpoints with key {}",
        public.fingerprint()
    );
    Ok(key)
}
