//! The real binary serving MCP over HTTP, and clients for it.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use rmcp::{
    RoleClient, ServiceExt,
    service::RunningService,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};

use super::{BIN, Ran};

/// `codemode-mcp serve --http 127.0.0.1:0 ARGS`, with its log collected.
pub struct HttpServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    log: Arc<Mutex<String>>,
}

impl HttpServer {
    /// Starts the server and waits until it listens.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_on("127.0.0.1:0", args, env)
    }

    /// Starts the server on `bind` (a port known before it starts: an OAuth resource URI
    /// names it).
    pub fn start_on(bind: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--http", bind])
            .args(args)
            .env("CODEMODE_LOG", "info")
            .env_remove("CODEMODE_AUTH_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn codemode-mcp");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (found, address) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let addr = rest.split(':').take(2).collect::<Vec<_>>().join(":");
                        let _ = found.send(addr);
                    }
                    log.lock().unwrap().push_str(&line);
                    log.lock().unwrap().push('\n');
                }
            });
        }
        let addr = address
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("server did not listen:\n{}", log.lock().unwrap()));
        Self { child, addr, log }
    }

    /// Starts the server with `--auth-token-file` holding `token` (written in `dir`) and
    /// `args`.
    pub fn start_with_token(dir: &std::path::Path, token: &str, args: &[&str]) -> Self {
        let token_file = dir.join("token");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        let mut all = vec!["--auth-token-file", token_file.to_str().unwrap()];
        all.extend_from_slice(args);
        Self::start(&all)
    }

    /// A streamable HTTP MCP session at `/mcp` that sends `token` as its bearer token.
    pub async fn client_with_token(&self, token: &str) -> RunningService<RoleClient, ()> {
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.url("/mcp"));
        config.auth_header = Some(token.into());
        self.client_with(config)
            .await
            .expect("MCP handshake over streamable HTTP with the token")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log holds every one of `needles` (its lines arrive through a reader
    /// thread, after the answers that caused them), at most 30 s; the log then.
    pub fn log_containing(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + super::POLL_CEILING;
        loop {
            let log = self.log();
            if needles.iter().all(|n| log.contains(n)) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A streamable HTTP MCP session at `/mcp`.
    pub async fn client(&self) -> RunningService<RoleClient, ()> {
        self.client_with(StreamableHttpClientTransportConfig::with_uri(
            self.url("/mcp"),
        ))
        .await
        .expect("MCP handshake over streamable HTTP")
    }

    pub async fn client_with(
        &self,
        config: StreamableHttpClientTransportConfig,
    ) -> Result<RunningService<RoleClient, ()>, rmcp::service::ClientInitializeError> {
        ().serve(StreamableHttpClientTransport::from_config(config))
            .await
    }

    /// `codemode_executions_in_flight` from `/metrics` (executions running or waiting for
    /// a slot), if the server answers it.
    pub async fn executions_in_flight(&self) -> Option<u64> {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix("codemode_executions_in_flight "))
            .and_then(|value| value.trim().parse().ok())
    }

    /// Waits until `/metrics` counts at least `n` executions in flight (at most 30 s): the
    /// moment a test may act on a program known to be running, instead of a fixed sleep.
    pub async fn wait_for_executions_in_flight(&self, n: u64) {
        let server = self;
        super::poll_until(&format!("{n} executions in flight"), move || async move {
            server
                .executions_in_flight()
                .await
                .filter(|now| *now >= n)
                .map(|_| ())
        })
        .await
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the child's own pid.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Waits for the server to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server still running after {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `code` through `execute_code` on `client`.
pub async fn execute(client: &rmcp::Peer<RoleClient>, code: &str) -> Ran {
    super::execute_on(client, json!({ "code": code })).await
}

/// The response to an `initialize` POST to `/mcp` that carries `token` as its bearer
/// token: what the front door makes of the token.
pub async fn initialize_as(
    server: &HttpServer,
    token: impl std::fmt::Display,
) -> reqwest::Response {
    post_mcp(server, initialize_body().to_string())
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// The JSON-RPC initialize request body a client sends first.
pub fn initialize_body() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw-http-test", "version": "1"}
        }
    })
}

/// A POST to `/mcp` as a streamable HTTP client sends it.
pub fn post_mcp(server: &HttpServer, body: String) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(server.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
}

/// A POST of protocol 2026-07-28 (no session): `method` with `params`, its `_meta` and
/// its `Mcp-Method`/`Mcp-Name` headers as a modern client sends them.
pub fn post_modern(
    server: &HttpServer,
    id: u32,
    method: &str,
    params: Value,
) -> reqwest::RequestBuilder {
    post_modern_with(server, id, method, params, json!({}))
}

/// [`post_modern`] from a client declaring `capabilities`.
pub fn post_modern_with(
    server: &HttpServer,
    id: u32,
    method: &str,
    mut params: Value,
    capabilities: Value,
) -> reqwest::RequestBuilder {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "raw-modern-test", "version": "1"}
    });
    // SEP-2243: the name a middlebox routes on, where the method has one.
    let name = ["name", "uri", "taskId"]
        .iter()
        .find_map(|key| params[key].as_str())
        .map(str::to_string);
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let request = post_mcp(server, body.to_string())
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    match name {
        Some(name) => request.header("mcp-name", name),
        None => request,
    }
}

/// The JSON-RPC answer of a response, whether a JSON body or an event stream.
pub async fn answer_of(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    let json = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|data| data.contains("\"id\""))
        .unwrap_or(&text);
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON-RPC ({e}): {text}"))
}

/// A legacy HTTP+SSE session (protocol 2024-11-05) spoken by hand: its open `GET /sse`
/// stream and the endpoint the stream announced.
pub struct SseSession {
    stream: reqwest::Response,
    pending: String,
    /// Where this session's messages are posted (`/messages?sessionId=...`).
    pub endpoint: String,
}

impl SseSession {
    /// Opens `GET /sse`, with `token` as the bearer if given, and reads its endpoint.
    pub async fn open(server: &HttpServer, token: Option<&str>) -> Self {
        let mut request = reqwest::Client::new().get(server.url("/sse"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let stream = request.send().await.unwrap();
        assert_eq!(stream.status(), 200);
        let mut session = Self {
            stream,
            pending: String::new(),
            endpoint: String::new(),
        };
        let (event, data) = session.event().await;
        assert_eq!(event, "endpoint", "{data}");
        session.endpoint = data;
        session
    }

    /// A POST of `body` to this session's endpoint as `token`.
    pub fn post(
        &self,
        server: &HttpServer,
        token: Option<&str>,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        let request = reqwest::Client::new()
            .post(server.url(&self.endpoint))
            .header("content-type", "application/json")
            .body(body.to_string());
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// The next event: its name and its data.
    async fn event(&mut self) -> (String, String) {
        loop {
            let normalized = self.pending.replace("\r\n", "\n");
            if let Some((block, rest)) = normalized.split_once("\n\n") {
                let (block, rest) = (block.to_string(), rest.to_string());
                self.pending = rest;
                let field = |name: &str| {
                    block
                        .lines()
                        .filter_map(|l| l.strip_prefix(name))
                        .map(|v| v.strip_prefix(' ').unwrap_or(v))
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                let data = field("data:");
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return (field("event:"), data);
            }
            let chunk = tokio::time::timeout(super::POLL_CEILING, self.stream.chunk())
                .await
                .expect("an event within the poll ceiling")
                .unwrap()
                .expect("the stream stays open");
            self.pending.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The message answering request `id`, skipping notifications and other answers.
    pub async fn answer(&mut self, id: u64) -> Value {
        loop {
            let (_, data) = self.event().await;
            let message: Value = serde_json::from_str(&data).unwrap();
            if message["id"] == json!(id) {
                return message;
            }
        }
    }
}
