//! MCP over HTTP: streamable HTTP at `/mcp` (rmcp's transport, with sessions or
//! stateless), the legacy HTTP+SSE transport at `/sse` + `/messages`, `/healthz`, and for
//! operators `/metrics` (Prometheus) and the console at `/console`.
//! Every request first passes [`guard`]: Host and Origin checks, bearer authentication,
//! the session cap; then [`binding`], which keeps each session to the principal that
//! opened it. [`HttpServer::serve`] drains on shutdown: it stops accepting, lets
//! requests in flight finish within the grace period, then stops the executions left,
//! which answer with a clear error.

mod binding;
mod console;
mod guard;
mod identity;
mod legacy_sse;
mod listener;

pub use identity::{AccessTokenVerifier, OAuthOptions, new_token};
pub use listener::ConnectionLimits;

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::{
    guard::{Guard, HostPolicy, InFlight, OriginPolicy},
    legacy_sse::LegacySse,
};
use crate::{embed::CodeMode, server::CodeModeServer};

/// How the HTTP server serves.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Address to listen on; port 0 picks a free one.
    pub bind: SocketAddr,
    /// No sessions: every request stands alone, so replicas behind a load balancer can
    /// share clients. Server-initiated notifications are not sent.
    pub stateless: bool,
    /// The token file's text (see `identity::tokens`): every request must carry one of
    /// its tokens (or an access token of `oauth`), each a principal of its own; only
    /// operators open the console and `/metrics`. A token or an issuer is required unless
    /// `bind` is loopback.
    pub auth_token: Option<String>,
    /// Access tokens of this OAuth authorization server are taken too (beside the token
    /// file's, when both are given).
    pub oauth: Option<OAuthOptions>,
    /// Host names (or `name:port`) accepted beside loopback ones; `*` accepts any.
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted beside loopback ones; `*` accepts any.
    pub allowed_origins: Vec<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// A streamable-HTTP session unused this long is closed.
    pub session_idle: Duration,
    /// Executions one session may run at once (the executor's caps apply on top).
    pub session_concurrency: usize,
    /// Sessions open at once, both transports together.
    pub max_sessions: usize,
    /// How long shutdown waits for requests in flight before it stops their executions.
    pub shutdown_grace: Duration,
    /// How long a client has to send headers, and how many connections may be open.
    pub connections: ConnectionLimits,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            stateless: false,
            auth_token: None,
            oauth: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_body_bytes: 4 << 20,
            session_idle: Duration::from_secs(300),
            session_concurrency: 4,
            max_sessions: 1024,
            shutdown_grace: Duration::from_secs(10),
            connections: ConnectionLimits::default(),
        }
    }
}

/// Why the HTTP server could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A non-loopback address without a token.
    #[error(
        "refusing to serve on {bind} without authentication: anyone who can reach that address could run programs with your tools. Give bearer tokens with --auth-token-file FILE (or the CODEMODE_AUTH_TOKEN environment variable; `codemode-mcp token NAME` makes one), or an OAuth issuer with --oauth-issuer URL --oauth-resource URL, or bind a loopback address such as 127.0.0.1"
    )]
    Unauthenticated {
        /// The address asked for.
        bind: SocketAddr,
    },
    /// An empty token.
    #[error("the auth token is empty; put a long random string in the token file")]
    EmptyToken,
    /// A line of the token file that is not a token.
    #[error("the token file, line {line}: {message}")]
    TokenFile {
        /// Its number, from 1.
        line: usize,
        /// What is wrong and what to write.
        message: String,
    },
    /// An OAuth option that cannot be used.
    #[error("{flag}: {message}")]
    OAuth {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An `--allowed-origin` that is not an origin.
    #[error(
        "--allowed-origin {origin:?} is not an origin; write scheme://host[:port], e.g. https://app.example.com or http://localhost:*, or `null`, or `*`"
    )]
    AllowedOrigin {
        /// What was given.
        origin: String,
    },
    /// The address could not be bound.
    #[error("could not listen on {bind}: {source}")]
    Bind {
        /// The address asked for.
        bind: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving HTTP failed: {0}")]
    Serve(std::io::Error),
}

/// How long, after the grace period, stopped executions have to answer and their
/// responses to be written before the connections are closed anyway.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// An HTTP server bound to its address, not yet serving.
#[derive(Debug)]
pub struct HttpServer {
    listener: TcpListener,
    options: HttpOptions,
    hosts: HostPolicy,
    origins: OriginPolicy,
    identity: Option<identity::Identity>,
}

impl HttpServer {
    /// Checks the options and binds the address.
    pub async fn bind(options: HttpOptions) -> Result<Self, HttpError> {
        let identity =
            identity::Identity::new(options.auth_token.as_deref(), options.oauth.as_ref())?;
        if identity.is_none() && !options.bind.ip().is_loopback() {
            return Err(HttpError::Unauthenticated { bind: options.bind });
        }
        let origins = OriginPolicy::new(&options.allowed_origins)?;
        let listener = TcpListener::bind(options.bind)
            .await
            .map_err(|source| HttpError::Bind {
                bind: options.bind,
                source,
            })?;
        Ok(Self {
            hosts: HostPolicy::new(options.bind.ip(), &options.allowed_hosts),
            origins,
            listener,
            options,
            identity,
        })
    }

    /// The address it listens on (with the port picked, when 0 was asked).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains: see the module documentation.
    pub async fn serve(
        self,
        codemode: CodeMode,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), HttpError> {
        let Self {
            listener,
            options,
            hosts,
            origins,
            identity,
        } = self;
        let in_flight = InFlight::new();
        // Ends every session and stream once draining is over.
        let sessions_end = CancellationToken::new();
        let new_handler = {
            let codemode = codemode.clone();
            let per_session = options.session_concurrency;
            let stateless = options.stateless;
            // Holds the tasks every handler shares: a modern client's requests each get a
            // handler of their own, and a task outlives the one that started it.
            let tasks = super::tasks::OwnedTasks::default();
            move |transport, session| {
                let handler = CodeModeServer::new(codemode.clone())
                    .with_tasks(Some(&tasks))
                    .with_session_limit(per_session)
                    .with_transport(transport, session);
                if stateless {
                    handler.stateless()
                } else {
                    handler
                }
            }
        };
        let mut session_manager = LocalSessionManager::default();
        session_manager.session_config.keep_alive = Some(options.session_idle);
        let session_manager = Arc::new(session_manager);
        let streamable = StreamableHttpService::new(
            {
                let new_handler = new_handler.clone();
                move || Ok(new_handler("http", None))
            },
            session_manager.clone(),
            StreamableHttpServerConfig::default()
                // The guard checks Host and Origin for every route, this one included.
                .disable_allowed_hosts()
                .disable_allowed_origins()
                .with_max_request_body_bytes(options.max_body_bytes)
                .with_legacy_session_mode(!options.stateless)
                .with_json_response(options.stateless)
                .with_cancellation_token(sessions_end.child_token()),
        );
        let session_owners = Arc::new(binding::SessionOwners::new(session_manager.clone()));
        let legacy = Arc::new(LegacySse::new(
            new_handler,
            sessions_end.clone(),
            in_flight.clone(),
            options.max_body_bytes,
        ));
        let sessions: guard::SessionCount = {
            let legacy = legacy.clone();
            Arc::new(move || {
                let (streamable, legacy) = (session_manager.clone(), legacy.clone());
                Box::pin(async move { streamable.sessions.read().await.len() + legacy.len() })
            })
        };
        if let Some(identity) = &identity {
            identity.prefetch();
        }
        let console_sessions = Arc::new(console::ConsoleSessions::default());
        let console = Arc::new(console::Console::new(
            codemode.clone(),
            identity.clone(),
            console_sessions.clone(),
        ));
        let metadata = identity
            .as_ref()
            .and_then(|i| i.oauth().cloned())
            .map(|options| options.metadata_documents())
            .unwrap_or_default();
        let guard = Arc::new(Guard {
            console_sessions,
            identity,
            hosts,
            origins,
            draining: Default::default(),
            in_flight,
            max_sessions: options.max_sessions,
            sessions,
            max_body_bytes: options.max_body_bytes,
        });
        let app = Router::new()
            .route(HEALTH_PATH, get(health).with_state(guard.clone()))
            .route(SSE_PATH, get(legacy_sse::open).with_state(legacy.clone()))
            .route(
                MESSAGES_PATH,
                post(legacy_sse::post).with_state(legacy.clone()),
            )
            .route(METRICS_PATH, get(metrics).with_state(codemode.clone()))
            .merge(console::routes(console))
            .merge(protected_resource_routes(metadata))
            .nest_service(STREAMABLE_PATH, streamable)
            // Inside the guard: it reads the principal the guard found.
            .layer(axum::middleware::from_fn_with_state(
                session_owners,
                binding::check,
            ));
        let app = guard::layered(app, &guard);

        let stop_accepting = CancellationToken::new();
        let server = tokio::spawn(listener::serve(
            listener,
            app,
            options.connections,
            stop_accepting.clone(),
        ));
        shutdown.await;

        tracing::info!(
            in_flight = guard.in_flight.count(),
            grace_ms = options.shutdown_grace.as_millis() as u64,
            "shutting down: no new connections or requests; waiting for requests in flight"
        );
        guard.draining.store(true, Ordering::SeqCst);
        codemode.close();
        stop_accepting.cancel();
        if tokio::time::timeout(options.shutdown_grace, guard.in_flight.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = guard.in_flight.count(),
                "grace period over: stopping the executions still running"
            );
            codemode.stop_all();
            let _ = tokio::time::timeout(STOP_MARGIN, guard.in_flight.idle()).await;
        }
        sessions_end.cancel();
        match tokio::time::timeout(STOP_MARGIN, server).await {
            Ok(Ok(())) => {}
            Ok(Err(join)) => return Err(HttpError::Serve(std::io::Error::other(join))),
            Err(_) => tracing::warn!("connections still open after shutdown; closing them"),
        }
        tracing::info!("HTTP server stopped");
        Ok(())
    }
}

/// Where Prometheus scrapes.
/// Where each endpoint is served: the MCP transports, the probe, the metrics.
pub(super) const STREAMABLE_PATH: &str = "/mcp";

/// Whether `path` reaches the streamable transport: `/mcp`, and (as the service is nested)
/// every path below it, which the transport serves alike. Every check of streamable
/// requests asks this, so that `/mcp/x` passes none of them by.
pub(super) fn is_streamable(path: &str) -> bool {
    path.strip_prefix(STREAMABLE_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}
/// The legacy HTTP+SSE transport's stream, and where its clients post.
pub(super) const SSE_PATH: &str = "/sse";
pub(super) const MESSAGES_PATH: &str = "/messages";
/// The health probe: the Host check like every endpoint, but no token (it tells nothing
/// but the state).
pub(super) const HEALTH_PATH: &str = "/healthz";
pub(super) const METRICS_PATH: &str = "/metrics";

/// `GET /metrics`: the metrics in OpenMetrics text.
async fn metrics(State(codemode): State<CodeMode>) -> Response {
    let text = codemode
        .oversight()
        .metrics()
        .render(codemode.upstreams(), codemode.worker_pool());
    (
        [(
            http::header::CONTENT_TYPE,
            crate::oversight::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response()
}

/// Serves `/metrics` (and `/healthz`) alone on `bind`, behind the same guard as the MCP
/// server (Host and Origin checks, the bearer token when given): for a server on stdio.
/// Runs until the process ends.
pub async fn serve_metrics(
    bind: SocketAddr,
    auth_token: Option<String>,
    codemode: CodeMode,
) -> Result<SocketAddr, HttpError> {
    let identity = identity::Identity::new(auth_token.as_deref(), None)?;
    if identity.is_none() && !bind.ip().is_loopback() {
        return Err(HttpError::Unauthenticated { bind });
    }
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| HttpError::Bind { bind, source })?;
    let addr = listener.local_addr().map_err(HttpError::Serve)?;
    let guard = Arc::new(Guard {
        identity,
        hosts: HostPolicy::new(bind.ip(), &[]),
        origins: OriginPolicy::new(&[])?,
        draining: Default::default(),
        in_flight: InFlight::new(),
        max_sessions: 0,
        sessions: Arc::new(|| Box::pin(async { 0 })),
        max_body_bytes: 0,
        console_sessions: Default::default(),
    });
    let app = guard::layered(
        Router::new()
            .route(HEALTH_PATH, get(health).with_state(guard.clone()))
            .route(METRICS_PATH, get(metrics).with_state(codemode)),
        &guard,
    );
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!("the metrics listener stopped: {err}");
        }
    });
    Ok(addr)
}

/// Where this server's Protected Resource Metadata (RFC 9728) is served, when an issuer's
/// tokens are taken: without a token, as clients read it before they have one.
fn protected_resource_routes(metadata: Vec<(String, serde_json::Value)>) -> Router {
    let mut router = Router::new();
    for (path, document) in metadata {
        let document = Json(document);
        router = router.route(&path, get(move || async move { document.clone() }));
    }
    router
}

/// `GET /healthz`: 200 while serving, 503 while draining.
async fn health(State(guard): State<Arc<Guard>>) -> Response {
    if guard.draining.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "draining"})),
        )
            .into_response()
    } else {
        Json(serde_json::json!({"status": "ok"})).into_response()
    }
}
