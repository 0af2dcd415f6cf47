//! Upstream MCP servers: one supervised client connection each.
//!
//! Every upstream connects on its own task, in parallel with the others; a failing or slow
//! one is reported and retried with backoff while the rest serve. A connection that closes
//! (the server crashed or exited) is reconnected the same way. Credentials (env, headers)
//! live here and nowhere else. What upstreams send, on every transport, passes `wire` before
//! rmcp reads it, so that one tool too deeply nested to parse cannot take its list with it.

mod child;
mod client;
mod environment;
mod headers;
mod sse;
mod streamable;
mod wire;

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use rmcp::{
    RoleClient,
    model::{CallToolRequestParams, CallToolResult, JsonObject, Tool},
    service::Peer,
};
use tokio::{sync::watch, task::JoinHandle};

use crate::config::{UpstreamConfig, UpstreamSettings};

/// The `_meta` key of a tool call that carries how deep executions already nest: a
/// code-mode server reads it on `execute_code` and sets it, one deeper, on the calls its
/// program makes.
pub const DEPTH_META: &str = "codemode-mcp/depth";

/// Why a call to an upstream failed before it produced a result.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The upstream is not connected (starting, down, or being restarted); transient.
    #[error("upstream \"{name}\" is not available: {status}")]
    Unavailable {
        /// The upstream.
        name: String,
        /// What its supervisor last saw.
        status: String,
    },
    /// The call took longer than the per-call timeout; transient.
    #[error("upstream \"{name}\" did not answer within {ms} ms")]
    Timeout {
        /// The upstream.
        name: String,
        /// The per-call timeout.
        ms: u128,
    },
    /// The connection failed during the call (for example, the server crashed).
    #[error("upstream \"{name}\" failed during the call: {message}")]
    Failed {
        /// The upstream.
        name: String,
        /// What the client library said.
        message: String,
    },
}

/// Where an upstream's connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Its first connection attempt has not finished.
    Connecting,
    /// Connected, tools listed.
    Ready,
    /// Not connected; being retried.
    Down {
        /// Why, for people and for the model: the last attempt's error.
        reason: String,
        /// When it went down (the first of the failed attempts since it was last ready).
        since: std::time::SystemTime,
    },
}

impl Status {
    /// Down for `reason`, since it went down: now, unless it already was.
    fn down(previous: &Status, reason: String) -> Status {
        let since = match previous {
            Status::Down { since, .. } => *since,
            _ => std::time::SystemTime::now(),
        };
        Status::Down { reason, since }
    }
}

/// Most characters of a reason shown where the model reads it.
const MAX_REASON_CHARS: usize = 500;

impl std::fmt::Display for Status {
    /// One line, whatever the reason quotes of what the upstream sent: the status is shown
    /// inside other text (the declarations' headers, the `execute_code` description).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connecting => f.write_str("connecting"),
            Self::Ready => f.write_str("ready"),
            Self::Down { reason, since } => {
                let since: chrono::DateTime<chrono::Utc> = (*since).into();
                write!(
                    f,
                    "down since {} ({}); retrying",
                    since.format("%Y-%m-%d %H:%M:%S UTC"),
                    one_line(reason)
                )
            }
        }
    }
}

/// `text` with line breaks and other control characters as spaces, cut to
/// [`MAX_REASON_CHARS`].
fn one_line(text: &str) -> String {
    let mut line: String = text
        .trim()
        .chars()
        .map(|c| {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                ' '
            } else {
                c
            }
        })
        .take(MAX_REASON_CHARS + 1)
        .collect();
    if line.chars().count() > MAX_REASON_CHARS {
        line = line.chars().take(MAX_REASON_CHARS - 3).collect();
        line.push_str("...");
    }
    line
}

/// What is known of one upstream at a moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Its key in `mcpServers`.
    pub name: String,
    /// `stdio`, `http` or `sse`.
    pub transport: &'static str,
    /// Connection state.
    pub status: Status,
    /// Its tools, as last listed (kept while it reconnects).
    pub tools: Arc<Vec<Tool>>,
    /// Time from the start of the last successful connection to its tools being listed.
    pub ready_in: Option<Duration>,
    /// What it wrote to stderr before its last failed attempt, for `check-config` and the
    /// log; never shown to a model.
    pub last_words: String,
}

/// One supervised upstream.
#[derive(Debug)]
pub struct Upstream {
    config: UpstreamConfig,
    settings: UpstreamSettings,
    state: RwLock<State>,
    calls: tokio::sync::Semaphore,
}

#[derive(Debug)]
struct State {
    status: Status,
    tools: Arc<Vec<Tool>>,
    peer: Option<Peer<RoleClient>>,
    ready_in: Option<Duration>,
    settled: bool,
    /// What the server wrote to stderr before its last failed attempt (operator-only).
    last_words: String,
}

impl Upstream {
    fn new(config: UpstreamConfig, settings: UpstreamSettings) -> Self {
        let permits = usize::try_from(settings.max_concurrent_calls)
            .unwrap_or(1)
            .max(1);
        Self {
            config,
            settings,
            state: RwLock::new(State {
                status: Status::Connecting,
                tools: Arc::new(Vec::new()),
                peer: None,
                ready_in: None,
                last_words: String::new(),
                settled: false,
            }),
            calls: tokio::sync::Semaphore::new(permits),
        }
    }

    /// Its key in `mcpServers`.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The current state.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        Snapshot {
            name: self.config.name.clone(),
            transport: self.config.transport.name(),
            status: state.status.clone(),
            tools: state.tools.clone(),
            ready_in: state.ready_in,
            last_words: state.last_words.clone(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        f(&mut state);
    }

    /// Calls `tool` with `arguments`. Waiting for a free call slot does not count against
    /// the per-call timeout.
    /// `depth` is the nesting depth of the execution making the call; it travels in the
    /// request's `_meta` ([`DEPTH_META`]) so that a code-mode upstream can refuse to nest
    /// executions without end. `traceparent` (W3C) joins the upstream's spans to the
    /// caller's trace, in the `_meta` as SEP-414 puts it.
    pub async fn call(
        &self,
        tool: &str,
        arguments: JsonObject,
        depth: u32,
        traceparent: Option<String>,
    ) -> Result<CallToolResult, UpstreamError> {
        let unavailable = |status: &Status| UpstreamError::Unavailable {
            name: self.config.name.clone(),
            status: status.to_string(),
        };
        let _permit = self
            .calls
            .acquire()
            .await
            .map_err(|_| UpstreamError::Unavailable {
                name: self.config.name.clone(),
                status: "shutting down".into(),
            })?;
        let peer = {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            match &state.peer {
                Some(peer) => peer.clone(),
                None => return Err(unavailable(&state.status)),
            }
        };
        let timeout = Duration::from_millis(
            self.config
                .call_timeout_ms
                .unwrap_or(self.settings.call_timeout_ms),
        );
        let mut params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        let mut meta = rmcp::model::RequestMetaObject::new();
        meta.insert(DEPTH_META.into(), serde_json::Value::from(depth + 1));
        if let Some(traceparent) = traceparent {
            meta.insert("traceparent".into(), serde_json::Value::from(traceparent));
        }
        params.meta = Some(meta);
        match tokio::time::timeout(timeout, peer.call_tool(params)).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(err)) => Err(UpstreamError::Failed {
                name: self.config.name.clone(),
                message: self.failure(&err.to_string()),
            }),
            Err(_) => Err(UpstreamError::Timeout {
                name: self.config.name.clone(),
                ms: timeout.as_millis(),
            }),
        }
    }

    /// What a failed call says: rmcp's words for an answer past the cap made plain.
    fn failure(&self, rmcp_says: &str) -> String {
        let cap = self.settings.max_result_kib;
        if rmcp_says.contains("exceeded the maximum size") {
            return format!(
                "upstream result exceeds {cap} KiB, the most one answer may be (codemode.upstream.maxResultKiB); it was dropped unread. Ask the tool for less (a page, a filter, fewer fields)"
            );
        }
        // Over HTTP an event far past the cap (four times) ends the stream that carried
        // it, and that is all rmcp says.
        if matches!(
            self.config.transport,
            crate::config::Transport::Http { .. } | crate::config::Transport::Sse { .. }
        ) && rmcp_says.contains("Transport closed")
        {
            return format!(
                "the stream carrying its answer closed before the result: the server went away, or its answer passed {cap} KiB (codemode.upstream.maxResultKiB), which ends the stream. If the tool answers much, ask it for less"
            );
        }
        rmcp_says.to_string()
    }

    /// Connects, serves until the connection closes, and starts over, with backoff.
    async fn supervise(self: Arc<Self>, changes: watch::Sender<u64>) {
        let notify = || changes.send_modify(|generation| *generation += 1);
        let mut backoff = Duration::from_millis(250);
        loop {
            let started = Instant::now();
            let connect_timeout = Duration::from_millis(self.settings.connect_timeout_ms);
            let outcome = tokio::time::timeout(
                connect_timeout,
                client::connect(&self.config, self.settings.max_result_bytes()),
            )
            .await;
            match outcome {
                Ok(Ok(mut connection)) => {
                    let ready_in = started.elapsed();
                    tracing::info!(
                        upstream = %self.config.name,
                        tools = connection.tools.len(),
                        ms = ready_in.as_millis() as u64,
                        "upstream ready"
                    );
                    self.update(|s| {
                        s.status = Status::Ready;
                        s.tools = Arc::new(std::mem::take(&mut connection.tools));
                        s.peer = Some(connection.peer.clone());
                        s.ready_in = Some(ready_in);
                        s.settled = true;
                    });
                    notify();
                    backoff = Duration::from_millis(250);
                    let reason = self.serve(&mut connection, &notify).await;
                    tracing::warn!(upstream = %self.config.name, "upstream down: {reason}");
                    self.update(|s| {
                        s.status = Status::down(&s.status, reason);
                        s.peer = None;
                    });
                    notify();
                }
                Ok(Err(err)) => self.failed(err, &notify),
                Err(_) => self.failed(
                    format!(
                        "did not start and list its tools within {} ms",
                        connect_timeout.as_millis()
                    )
                    .into(),
                    &notify,
                ),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    fn failed(&self, error: client::ConnectError, notify: &impl Fn()) {
        let client::ConnectError { reason, stderr } = error;
        tracing::warn!(upstream = %self.config.name, "upstream failed to connect: {reason}{stderr}");
        self.update(|s| {
            s.last_words = stderr;
            s.status = Status::down(&s.status, reason);
            s.peer = None;
            s.settled = true;
        });
        notify();
    }

    /// Serves one connection: refreshes the tools on `list_changed` until it closes.
    async fn serve(&self, connection: &mut client::Connection, notify: &impl Fn()) -> String {
        loop {
            tokio::select! {
                closed = &mut connection.closed => {
                    return match closed {
                        Ok(reason) => format!("the connection closed ({reason})"),
                        Err(_) => "the connection task failed".to_string(),
                    };
                }
                Some(()) = connection.list_changed.recv() => {
                    match connection.peer.list_all_tools().await {
                        Ok(tools) => {
                            tracing::info!(upstream = %self.config.name, tools = tools.len(), "tool list changed");
                            self.update(|s| s.tools = Arc::new(tools));
                            notify();
                        }
                        Err(err) => tracing::warn!(upstream = %self.config.name, "re-listing tools failed: {err}"),
                    }
                }
            }
        }
    }
}

/// All configured upstreams.
#[derive(Debug)]
pub struct Upstreams {
    list: Vec<Arc<Upstream>>,
    changes: watch::Sender<u64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Upstreams {
    /// Starts connecting every upstream, each on its own task. Needs a tokio runtime.
    pub fn start(configs: &[UpstreamConfig], settings: UpstreamSettings) -> Arc<Self> {
        let (changes, _) = watch::channel(0);
        let list: Vec<Arc<Upstream>> = configs
            .iter()
            .map(|c| Arc::new(Upstream::new(c.clone(), settings)))
            .collect();
        let tasks = list
            .iter()
            .map(|u| tokio::spawn(u.clone().supervise(changes.clone())))
            .collect();
        Arc::new(Self {
            list,
            changes,
            tasks,
        })
    }

    /// No upstreams.
    pub fn none() -> Arc<Self> {
        Arc::new(Self {
            list: Vec::new(),
            changes: watch::channel(0).0,
            tasks: Vec::new(),
        })
    }

    /// Starts every upstream and waits for each one's first connection attempt, at most
    /// the connect timeout: a slow upstream joins later.
    pub async fn connect(configs: &[UpstreamConfig], settings: UpstreamSettings) -> Arc<Self> {
        let upstreams = Self::start(configs, settings);
        // Each attempt gives up at the connect timeout by itself; the margin lets the one
        // that gives up say so (not still "connecting") before anyone reads its status.
        upstreams
            .settled(Duration::from_millis(settings.connect_timeout_ms) + Duration::from_secs(1))
            .await;
        upstreams
    }

    /// Waits until every upstream has finished its first connection attempt, or `limit`.
    pub async fn settled(&self, limit: Duration) {
        let mut changes = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let all = self
                .list
                .iter()
                .all(|u| u.state.read().map(|s| s.settled).unwrap_or(true));
            if all {
                return;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Every upstream, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.list.iter()
    }

    /// The upstream named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.list.iter().find(|u| u.config.name == name)
    }

    /// Changes whenever an upstream's status or tools change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// A number that changes whenever an upstream's status or tools change.
    pub fn generation(&self) -> u64 {
        *self.changes.borrow()
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::Transport;

    #[test]
    fn a_down_reason_shows_on_one_line_cut_to_length() {
        let status = Status::Down {
            reason: format!("tools/list failed: a\nb\r\u{2028}c {}", "x".repeat(1_000)),
            since: std::time::UNIX_EPOCH,
        };
        let text = status.to_string();
        assert!(
            text.starts_with("down since 1970-01-01 00:00:00 UTC (tools/list failed: a b  c xxx"),
            "{text}"
        );
        assert!(text.ends_with("...); retrying"), "{text}");
        assert!(!text.contains(['\n', '\r', '\u{2028}']));
        assert_eq!(
            text.chars().count(),
            MAX_REASON_CHARS + "down since 1970-01-01 00:00:00 UTC (); retrying".len()
        );
    }

    /// A `tools/list` answer's tools: one plain, one nested 300 levels (past what
    /// serde_json reads).
    fn deep_tools() -> String {
        let deep = format!("{}{{}}{}", "{\"anyOf\":[".repeat(150), "]}".repeat(150));
        format!(
            "[{{\"name\":\"fine\",\"inputSchema\":{{\"type\":\"object\"}}}},{{\"name\":\"bomb\",\"inputSchema\":{deep}}}]"
        )
    }

    /// An upstream (a shell script) whose `tools/list` holds [`deep_tools`].
    fn deep_upstream() -> UpstreamConfig {
        let tools = deep_tools();
        let script = format!(
            r#"while read -r line; do
  id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9][0-9]*\).*/\1/p')
  case "$line" in
    *'"initialize"'*) printf '{{"jsonrpc":"2.0","id":%s,"result":{{"protocolVersion":"2025-06-18","capabilities":{{"tools":{{}}}},"serverInfo":{{"name":"deep","version":"1"}}}}}}\n' "$id" ;;
    *'"tools/list"'*) printf '{{"jsonrpc":"2.0","id":%s,"result":{{"tools":%s}}}}\n' "$id" '{tools}' ;;
  esac
done"#
        );
        UpstreamConfig {
            name: "deep".into(),
            transport: Transport::Stdio {
                command: "sh".into(),
                args: vec!["-c".into(), script],
                env: BTreeMap::new(),
                cwd: None,
                inherit_env: Vec::new(),
            },
            call_timeout_ms: None,
            auto_approve: Vec::new(),
            disabled_tools: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_tool_too_deep_to_parse_leaves_its_upstream_up_with_the_others() {
        let connection = tokio::time::timeout(
            Duration::from_secs(20),
            client::connect(&deep_upstream(), 8 << 20),
        )
        .await
        .expect("listed within the timeout")
        .expect("connected");
        let names: Vec<&str> = connection.tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, ["fine"]);
    }

    /// How the streamable HTTP upstream of [`deep_http_upstream`] answers a request.
    #[derive(Debug, Clone, Copy)]
    enum Answer {
        Json,
        EventStream,
    }

    /// A streamable HTTP upstream on a free port whose `tools/list` holds [`deep_tools`],
    /// answering `answer`'s way. It turns away a request without the `Authorization` header
    /// of its config or, after `initialize`, without the session id it gave.
    async fn deep_http_upstream(answer: Answer) -> (UpstreamConfig, JoinHandle<()>) {
        use axum::{
            Router,
            body::Bytes,
            http::{HeaderMap, StatusCode, header},
            response::IntoResponse,
            routing::post,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("bound");
        let respond = move |headers: HeaderMap, body: Bytes| async move {
            let request: serde_json::Value = serde_json::from_slice(&body).expect("JSON-RPC");
            let method = request["method"].as_str().unwrap_or_default().to_string();
            let authorized = headers
                .get(header::AUTHORIZATION)
                .is_some_and(|v| v == "Bearer secret");
            let in_session =
                method == "initialize" || headers.get("mcp-session-id").is_some_and(|v| v == "s-1");
            if !authorized || !in_session {
                return StatusCode::BAD_REQUEST.into_response();
            }
            let result = match method.as_str() {
                "initialize" => "{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{\"tools\":{}},\"serverInfo\":{\"name\":\"deep\",\"version\":\"1\"}}".to_string(),
                "tools/list" => format!("{{\"tools\":{}}}", deep_tools()),
                _ => return StatusCode::ACCEPTED.into_response(),
            };
            let message = format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{result}}}",
                request["id"]
            );
            let (content_type, body) = match answer {
                Answer::Json => ("application/json", message),
                Answer::EventStream => (
                    "text/event-stream",
                    format!("event: message\ndata: {message}\n\n"),
                ),
            };
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::HeaderName::from_static("mcp-session-id"), "s-1"),
                ],
                body,
            )
                .into_response()
        };
        let app = Router::new().route(
            "/mcp",
            post(respond)
                .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
                .delete(|| async { StatusCode::OK }),
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let config = UpstreamConfig {
            name: "deep".into(),
            transport: Transport::Http {
                url: format!("http://{address}/mcp"),
                headers: BTreeMap::from([("Authorization".into(), "Bearer secret".into())]),
            },
            call_timeout_ms: None,
            auto_approve: Vec::new(),
            disabled_tools: Vec::new(),
        };
        (config, server)
    }

    async fn connects_listing_only_the_fine_tool(answer: Answer) {
        let (config, server) = deep_http_upstream(answer).await;
        let connection =
            tokio::time::timeout(Duration::from_secs(20), client::connect(&config, 8 << 20))
                .await
                .unwrap_or_else(|_| panic!("{answer:?}: listed within the timeout"))
                .unwrap_or_else(|e| panic!("{answer:?}: connected: {}", e.reason));
        let names: Vec<&str> = connection.tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, ["fine"], "{answer:?}");
        server.abort();
    }

    #[tokio::test]
    async fn a_tool_too_deep_to_parse_leaves_its_http_upstream_up_answering_json() {
        connects_listing_only_the_fine_tool(Answer::Json).await;
    }

    #[tokio::test]
    async fn a_tool_too_deep_to_parse_leaves_its_http_upstream_up_answering_an_event_stream() {
        connects_listing_only_the_fine_tool(Answer::EventStream).await;
    }
}
