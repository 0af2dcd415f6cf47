//! Capacity: no new work while the server drains, no session past `--max-sessions`, and
//! the count of requests in flight that shutdown waits for.

use std::sync::{Arc, atomic::Ordering};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use http::{Method, StatusCode};
use tokio::sync::watch;

use super::{Guard, Refusal};
use crate::server::http::{SSE_PATH, is_streamable};

/// The layer: refuses new work while draining, and new sessions past the cap.
pub(in crate::server::http) async fn check(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Result<Response, Refusal> {
    let opens_session = (request.method() == Method::POST
        && is_streamable(request.uri().path())
        && !request.headers().contains_key("mcp-session-id"))
        || (request.method() == Method::GET && request.uri().path() == SSE_PATH);
    if guard.draining.load(Ordering::SeqCst) && (request.method() == Method::POST || opens_session)
    {
        return Err(Refusal::said(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down and takes no new requests; retry once it is back (or on another replica)",
        ));
    }
    if opens_session {
        let open = (guard.sessions)().await;
        if open >= guard.max_sessions {
            return Err(Refusal::said(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the server holds {open} sessions, its limit (--max-sessions); end one (DELETE /mcp with its Mcp-Session-Id) or retry later"
                ),
            ));
        }
    }
    if request.method() == Method::DELETE && is_streamable(request.uri().path()) {
        let mut response = next.run(request).await;
        // The transport answers a session's end with 202; the official SDK clients expect
        // 200 (or 204) and log anything else as a failure.
        if response.status() == StatusCode::ACCEPTED {
            *response.status_mut() = StatusCode::OK;
        }
        return Ok(response);
    }
    Ok(next.run(request).await)
}

/// Requests being answered now (POSTs until their response body is done, legacy-SSE
/// requests until their response is sent): shutdown waits for it to reach zero.
#[derive(Debug, Clone)]
pub(in crate::server::http) struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    pub(in crate::server::http) fn new() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }

    pub(in crate::server::http) fn enter(&self) -> InFlightGuard {
        self.0.send_modify(|n| *n += 1);
        InFlightGuard(self.clone())
    }

    /// Resolves when nothing is in flight.
    pub(in crate::server::http) async fn idle(&self) {
        let mut watch = self.0.subscribe();
        let _ = watch.wait_for(|n| *n == 0).await;
    }

    pub(in crate::server::http) fn count(&self) -> usize {
        *self.0.borrow()
    }
}

/// One request in flight; dropping it ends it.
#[derive(Debug)]
pub(in crate::server::http) struct InFlightGuard(InFlight);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Counts the sessions open now, for the session cap.
pub(in crate::server::http) type SessionCount =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, usize> + Send + Sync>;
