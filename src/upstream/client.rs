//! One client connection to an upstream, over the transport its config names.

use rmcp::{
    ClientHandler, RoleClient, ServiceExt,
    model::{ClientCapabilities, ClientConfig, Implementation, Tool},
    service::{NotificationContext, Peer, QuitReason},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    sync::mpsc,
    task::JoinHandle,
};

use crate::config::{Transport, UpstreamConfig};

/// A live connection.
pub(super) struct Connection {
    pub(super) peer: Peer<RoleClient>,
    pub(super) tools: Vec<Tool>,
    /// Ends when the connection closes.
    pub(super) closed: JoinHandle<String>,
    /// One message per `notifications/tools/list_changed`.
    pub(super) list_changed: mpsc::UnboundedReceiver<()>,
}

/// Our side of the connection: identifies us and forwards `list_changed`.
#[derive(Debug, Clone)]
struct Handler {
    list_changed: mpsc::UnboundedSender<()>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")),
        )
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.list_changed.send(());
    }
}

/// Connects to the upstream of `config`; a message from it past `max_message_bytes` fails
/// the call it answers, on every transport.
pub(super) async fn connect(
    config: &UpstreamConfig,
    max_message_bytes: usize,
) -> Result<Connection, ConnectError> {
    let (tx, list_changed) = mpsc::unbounded_channel();
    let handler = Handler { list_changed: tx };
    let service = match &config.transport {
        Transport::Stdio {
            command,
            args,
            env,
            cwd,
            inherit_env,
        } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args)
                .env_clear()
                .envs(super::environment::for_child(
                    std::env::vars(),
                    inherit_env,
                    env,
                ));
            if let Some(cwd) = cwd {
                cmd.current_dir(cwd);
            }
            let (transport, stderr) = super::child::spawn(&config.name, cmd, max_message_bytes)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound if !command.contains('/') => format!(
                        "cannot start `{command}`: not found on PATH. Desktop apps start servers with a minimal PATH: give \"command\" the absolute path (`command -v {command}` in a terminal prints it)"
                    ),
                    std::io::ErrorKind::NotFound => {
                        format!("cannot start `{command}`: no such file")
                    }
                    _ => format!("cannot start `{command}`: {e}"),
                })?;
            let said = StderrTail::default();
            let mut reader = None;
            if let Some(stderr) = stderr {
                let name = config.name.clone();
                let said = said.clone();
                reader = Some(tokio::spawn(async move {
                    let mut lines = BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::info!(target: "upstream", "[{name}] {line}");
                        said.push(line);
                    }
                }));
            }
            match handler.serve(transport).await {
                Ok(service) => service,
                Err(e) => {
                    // The child's last words are usually the real cause: read them to
                    // the end of its stderr (it has exited), or for as long as a live
                    // one is worth waiting for.
                    if let Some(reader) = reader.as_mut() {
                        let _ =
                            tokio::time::timeout(std::time::Duration::from_secs(2), reader).await;
                    }
                    let what = match e {
                        rmcp::service::ClientInitializeError::ConnectionClosed(_) => {
                            "it exited, or closed its stdout, before it answered `initialize`"
                                .to_string()
                        }
                        other => format!("MCP handshake failed: {other}"),
                    };
                    return Err(ConnectError {
                        reason: what,
                        stderr: said.render(),
                    });
                }
            }
        }
        Transport::Http { url, headers } => {
            let transport = StreamableHttpClientTransport::with_client(
                super::streamable::AdmittingClient::new(&config.name)?,
                StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(super::headers::header_map(headers)?)
                    .max_sse_event_size(max_message_bytes)
                    .max_json_response_size(max_message_bytes),
            );
            handler
                .serve(transport)
                .await
                .map_err(|e| format!("cannot connect to {url}: {}", plain_cause(&e)))?
        }
        Transport::Sse { url, headers } => {
            let transport =
                super::sse::connect(&config.name, url, headers, max_message_bytes).await?;
            handler
                .serve(transport)
                .await
                .map_err(|e| format!("cannot connect to {url}: {}", plain_cause(&e)))?
        }
    };
    let peer = service.peer().clone();
    let tools = peer
        .list_all_tools()
        .await
        .map_err(|e| format!("tools/list failed: {e}"))?;
    let closed = tokio::spawn(async move {
        match service.waiting().await {
            Ok(QuitReason::Closed) => "closed by the server".to_string(),
            Ok(reason) => format!("{reason:?}"),
            Err(err) => err.to_string(),
        }
    });
    Ok(Connection {
        peer,
        tools,
        closed,
        list_changed,
    })
}

/// Why a connection failed: the reason, which the model may read, and what the server
/// wrote to stderr, which is for the operator alone (it may quote a secret of its
/// environment, or text an untrusted server wants a model to read).
#[derive(Debug)]
pub(super) struct ConnectError {
    pub(super) reason: String,
    /// `; its last words on stderr: ...`, or empty.
    pub(super) stderr: String,
}

impl From<String> for ConnectError {
    fn from(reason: String) -> Self {
        Self {
            reason,
            stderr: String::new(),
        }
    }
}

/// The root of a failed connection in plain words ("connection refused", "the server
/// answered HTTP 404 Not Found"), not the transport's type names.
fn plain_cause(error: &rmcp::service::ClientInitializeError) -> String {
    use rmcp::service::ClientInitializeError;
    let ClientInitializeError::TransportError { error, .. } = error else {
        return error.to_string();
    };
    let mut deepest = error.error.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*error.error);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return plain_io(io);
        }
        if let Some(http) = err.downcast_ref::<reqwest::Error>() {
            if let Some(status) = http.status() {
                return format!("the server answered HTTP {status}");
            }
            if http.is_timeout() {
                return "the request timed out".to_string();
            }
        }
        deepest = err.to_string();
        source = err.source();
    }
    // The transport's wrappers do not all chain their sources; their debug form still
    // holds the root.
    let debug = format!("{error:?}");
    if debug.contains("ConnectionRefused") {
        return plain_io(&std::io::ErrorKind::ConnectionRefused.into());
    }
    if let Some(at) = debug.find("HttpStatusError { status: ") {
        let code: String = debug[at + 26..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Some(status) = code
            .parse()
            .ok()
            .and_then(|c| http::StatusCode::from_u16(c).ok())
        {
            return format!(
                "the server answered HTTP {status} (is this the server's MCP endpoint?)"
            );
        }
    }
    for (marker, plain) in [
        ("dns error", "the host name does not resolve"),
        ("TimedOut", "the connection timed out"),
        ("certificate", "the TLS certificate was not accepted"),
    ] {
        if debug.contains(marker) {
            return plain.to_string();
        }
    }
    deepest
}

fn plain_io(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            "connection refused: nothing listens at that address and port".to_string()
        }
        std::io::ErrorKind::TimedOut => "the connection timed out".to_string(),
        _ => error.to_string(),
    }
}

/// The last lines a started server wrote to stderr, kept for the error when it fails to
/// connect.
#[derive(Clone, Default)]
struct StderrTail(std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>);

impl StderrTail {
    const LINES: usize = 5;
    const LINE_CHARS: usize = 300;

    fn push(&self, line: String) {
        let line: String = line.chars().take(Self::LINE_CHARS).collect();
        if line.trim().is_empty() {
            return;
        }
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == Self::LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// `; it wrote to stderr: ...`, or nothing when it wrote nothing.
    fn render(&self) -> String {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.is_empty() {
            return String::new();
        }
        let joined: Vec<&str> = lines.iter().map(|l| l.trim_end()).collect();
        format!("; its last words on stderr: {}", joined.join(" | "))
    }
}
