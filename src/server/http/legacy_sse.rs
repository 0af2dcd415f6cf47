//! The legacy HTTP+SSE transport (protocol 2024-11-05), for clients that predate
//! streamable HTTP: `GET /sse` opens a session and announces, as its first `endpoint`
//! event, where to POST; each `POST /messages?sessionId=...` carries one JSON-RPC message
//! (or a batch) and is answered `202 Accepted`; replies travel as `message` events on the
//! stream. rmcp has no server side for it, so this is a transport over rmcp's `Transport`
//! trait serving the same handler as `/mcp`. A session is its opener's: a POST from
//! another principal is answered as one to a session that never existed, and each message
//! carries its POST's request head, so the handler sees the principal as over `/mcp`.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Extension,
    extract::{Query, Request, State},
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::Stream;
use rmcp::{
    RoleServer, ServiceExt,
    model::{ClientJsonRpcMessage, GetExtensions as _, RequestId, ServerJsonRpcMessage},
    transport::Transport,
};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::MESSAGES_PATH;
use super::guard::{InFlight, InFlightGuard, Refusal, is_json, read_body, refuse};
use crate::server::{CodeModeServer, Principal};

/// Messages a session may have waiting in either direction before the sender waits.
const CHANNEL_CAPACITY: usize = 64;

/// An open session: where its messages go, and who opened it (`None`: anonymous).
struct Session {
    to_handler: mpsc::Sender<ClientJsonRpcMessage>,
    opener: Option<Principal>,
}

/// The open legacy-SSE sessions.
pub(super) struct LegacySse {
    sessions: Mutex<HashMap<String, Session>>,
    new_handler: Box<dyn Fn(&'static str, Option<String>) -> CodeModeServer + Send + Sync>,
    shutdown: CancellationToken,
    in_flight: InFlight,
    max_body_bytes: usize,
}

impl std::fmt::Debug for LegacySse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacySse")
            .field("sessions", &self.len())
            .finish_non_exhaustive()
    }
}

impl LegacySse {
    pub(super) fn new(
        new_handler: impl Fn(&'static str, Option<String>) -> CodeModeServer + Send + Sync + 'static,
        shutdown: CancellationToken,
        in_flight: InFlight,
        max_body_bytes: usize,
    ) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            new_handler: Box::new(new_handler),
            shutdown,
            in_flight,
            max_body_bytes,
        }
    }

    /// Sessions open now.
    pub(super) fn len(&self) -> usize {
        self.sessions.lock().map_or(0, |s| s.len())
    }

    /// Where session `id`'s messages go, if `principal` opened it.
    fn sender(
        &self,
        id: &str,
        principal: Option<&Principal>,
    ) -> Option<mpsc::Sender<ClientJsonRpcMessage>> {
        let sessions = self.sessions.lock().ok()?;
        let session = sessions.get(id)?;
        (session.opener.as_ref() == principal).then(|| session.to_handler.clone())
    }
}

/// Ends the session when the client's stream goes away.
struct SessionGuard {
    id: String,
    legacy: Arc<LegacySse>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Ok(mut sessions) = self.legacy.sessions.lock() {
            // Dropping the sender ends the handler's input, and so the session.
            sessions.remove(&self.id);
        }
        tracing::debug!(session = %self.id, "legacy SSE session ended");
    }
}

/// `GET /sse`: a new session, its handler, and the stream of its messages.
pub(super) async fn open(
    State(legacy): State<Arc<LegacySse>>,
    opener: Option<Extension<Principal>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (to_handler, from_client) = mpsc::channel(CHANNEL_CAPACITY);
    let (to_client, from_handler) = mpsc::channel(CHANNEL_CAPACITY);
    if let Ok(mut sessions) = legacy.sessions.lock() {
        let opener = opener.map(|Extension(principal)| principal);
        sessions.insert(id.clone(), Session { to_handler, opener });
    }
    let transport = SessionTransport {
        from_client,
        to_client,
        pending: Arc::new(Mutex::new(HashMap::new())),
        in_flight: legacy.in_flight.clone(),
    };
    let handler = (legacy.new_handler)("sse", Some(id.clone()));
    let session_end = legacy.shutdown.child_token();
    tokio::spawn({
        let id = id.clone();
        let session_end = session_end.clone();
        async move {
            match handler.serve_with_ct(transport, session_end).await {
                Ok(service) => {
                    let _ = service.waiting().await;
                }
                Err(err) => {
                    tracing::debug!(session = %id, "legacy SSE session not initialised: {err}")
                }
            }
        }
    });
    tracing::debug!(session = %id, "legacy SSE session opened");

    let guard = SessionGuard {
        id: id.clone(),
        legacy: legacy.clone(),
    };
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("{MESSAGES_PATH}?sessionId={id}"));
    // The handler's messages until it ends: at shutdown its token ends it, and what it
    // had already queued is still sent. The guard lives as long as the client listens.
    let messages = futures::stream::unfold(
        (from_handler, guard),
        |(mut from_handler, guard)| async move {
            let message = from_handler.recv().await?;
            let event = Event::default()
                .event("message")
                .json_data(&message)
                .unwrap_or_else(|err| {
                    Event::default().comment(format!("unserialisable message: {err}"))
                });
            Some((Ok(event), (from_handler, guard)))
        },
    );
    let stream =
        futures::StreamExt::chain(futures::stream::once(async move { Ok(endpoint) }), messages);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MessagesQuery {
    session_id: Option<String>,
}

/// `POST /messages?sessionId=...`: hands the message, with the request's head, to the
/// session's handler.
pub(super) async fn post(
    State(legacy): State<Arc<LegacySse>>,
    Query(query): Query<MessagesQuery>,
    request: Request,
) -> Response {
    let (head, body) = request.into_parts();
    let Some(id) = query.session_id else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the sessionId query parameter is missing; POST to the endpoint URL the GET /sse stream announced".into(),
        );
    };
    let Some(session) = legacy.sender(&id, head.extensions.get::<Principal>()) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no session {id:?}: it ended or never existed; open GET /sse again for a new one"
            ),
        );
    };
    if !is_json(&head.headers) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be a JSON-RPC message sent with Content-Type: application/json".into(),
        );
    }
    let body = match read_body(body, legacy.max_body_bytes).await {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    let messages = match parse_messages(&body) {
        Ok(messages) => messages,
        Err(refusal) => return *refusal,
    };
    for mut message in messages {
        // As rmcp's own transport does: the handler reads the principal, the trace
        // context and the headers from the request's extensions.
        match &mut message {
            ClientJsonRpcMessage::Request(request) => {
                request.request.extensions_mut().insert(head.clone());
            }
            ClientJsonRpcMessage::Notification(notification) => {
                notification
                    .notification
                    .extensions_mut()
                    .insert(head.clone());
            }
            _ => {}
        }
        if session.send(message).await.is_err() {
            return refuse(
                StatusCode::NOT_FOUND,
                format!("session {id:?} has ended; open GET /sse again for a new one"),
            );
        }
    }
    (StatusCode::ACCEPTED, "Accepted").into_response()
}

/// One message or a batch (which the 2024-11-05 protocol allows).
fn parse_messages(body: &[u8]) -> Result<Vec<ClientJsonRpcMessage>, Box<Response>> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|err| Box::new(Refusal::NotJson(err).into_response()))?;
    let items = match value {
        serde_json::Value::Array(items) if items.is_empty() => {
            return Err(Box::new(refuse(
                StatusCode::BAD_REQUEST,
                "invalid request: an empty batch".into(),
            )));
        }
        serde_json::Value::Array(items) => items,
        single => vec![single],
    };
    items
        .into_iter()
        .map(|item| {
            serde_json::from_value(item).map_err(|err| {
                Box::new(refuse(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "invalid request: not a JSON-RPC 2.0 message an MCP client sends ({err})"
                    ),
                ))
            })
        })
        .collect()
}

/// A session's side of the transport, as rmcp's service loop sees it. It also counts the
/// session's requests that await an answer, so that shutdown can wait for them.
struct SessionTransport {
    from_client: mpsc::Receiver<ClientJsonRpcMessage>,
    to_client: mpsc::Sender<ServerJsonRpcMessage>,
    pending: Arc<Mutex<HashMap<RequestId, InFlightGuard>>>,
    in_flight: InFlight,
}

/// The session's stream is gone.
#[derive(Debug, thiserror::Error)]
#[error("the client's SSE stream is closed")]
pub(super) struct StreamClosed;

impl Transport<RoleServer> for SessionTransport {
    type Error = StreamClosed;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let to_client = self.to_client.clone();
        let pending = self.pending.clone();
        async move {
            let answered = match &item {
                ServerJsonRpcMessage::Response(r) => Some(r.id.clone()),
                ServerJsonRpcMessage::Error(e) => e.id.clone(),
                _ => None,
            };
            let sent = to_client.send(item).await.map_err(|_| StreamClosed);
            if let Some(id) = answered
                && let Ok(mut pending) = pending.lock()
            {
                pending.remove(&id);
            }
            sent
        }
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        let message = self.from_client.recv().await?;
        if let ClientJsonRpcMessage::Request(request) = &message
            && let Ok(mut pending) = self.pending.lock()
        {
            pending.insert(request.id.clone(), self.in_flight.enter());
        }
        Some(message)
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // Requests never answered stop counting as in flight.
        if let Ok(mut pending) = self.pending.lock() {
            pending.clear();
        }
        Ok(())
    }
}
