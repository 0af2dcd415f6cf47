//! A real MCP client (rmcp) talking to the real binary over stdio (and over HTTP:
//! [`http`]).
#![allow(dead_code)]

pub mod http;
pub mod web;

use std::time::Duration;

use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, CallToolResult},
    service::RunningService,
    transport::TokioChildProcess,
};
use serde_json::{Value, json};
use tokio::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_codemode-mcp");

/// A new, empty directory for one test.
pub fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "codemode-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The most any test waits for something it polls for. Polls return as soon as their
/// condition holds, so this only matters on a slow or loaded machine.
pub const POLL_CEILING: Duration = Duration::from_secs(30);

/// Calls `probe` every 50 ms until it gives `Some`, and returns that; panics naming `what`
/// if it has not after [`POLL_CEILING`].
pub async fn poll_until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            started.elapsed() < POLL_CEILING,
            "gave up after {POLL_CEILING:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`poll_until`] with a probe that does not wait on anything (reads a file, /proc).
pub async fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    poll_until(what, || std::future::ready(probe())).await
}

/// Runs `run` (a program returning "slot free") until it is no longer refused as `busy`:
/// a cancelled run must free its slot within 20 s (generous: a loaded machine may be slow
/// to end the isolate, but a slot that is never freed still fails).
pub async fn assert_slot_frees<F, Fut>(mut run: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Ran>,
{
    let started = std::time::Instant::now();
    loop {
        let ran = run().await;
        if !ran.is_error {
            assert_eq!(ran.result(), &json!("slot free"));
            return;
        }
        assert_eq!(ran.error_kind(), "busy", "{ran:?}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the cancelled isolate kept its slot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client that reports each `notifications/tools/list_changed` on its channel.
#[derive(Clone)]
pub struct Watcher(pub tokio::sync::mpsc::UnboundedSender<()>);

impl rmcp::ClientHandler for Watcher {
    fn get_info(&self) -> rmcp::model::ClientConfig {
        rmcp::model::ClientConfig::default()
    }
    async fn on_tool_list_changed(
        &self,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        let _ = self.0.send(());
    }
}

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy)]
pub struct Process {
    pub pid: u32,
    pub parent: u32,
    /// `R`, `S`, `Z`, ...
    pub state: char,
    /// User and system CPU time, in clock ticks.
    pub ticks: u64,
}

/// Every process this machine's `/proc` shows.
pub fn process_table() -> Vec<Process> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name may hold spaces; the fields after its closing parenthesis don't.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or("0");
        found.push(Process {
            pid,
            parent: field(1).parse().unwrap_or(0),
            state: field(0).chars().next().unwrap_or('?'),
            ticks: field(11).parse::<u64>().unwrap_or(0) + field(12).parse::<u64>().unwrap_or(0),
        });
    }
    found
}

/// Every process below `ancestor` in the process tree, at any depth.
pub fn descendants(ancestor: u32) -> Vec<Process> {
    let table = process_table();
    let parents: std::collections::HashMap<u32, u32> =
        table.iter().map(|p| (p.pid, p.parent)).collect();
    let count = table.len();
    let below = |mut pid: u32| {
        // Bounded: a pid reused while the table was read must not loop.
        for _ in 0..count {
            match parents.get(&pid) {
                Some(&parent) if parent == ancestor => return true,
                Some(&parent) => pid = parent,
                None => return false,
            }
        }
        false
    };
    table.into_iter().filter(|p| below(p.pid)).collect()
}

/// `(pid, state, CPU ticks)` of each child process of `parent`.
pub fn children(parent: u32) -> Vec<(i32, char, u64)> {
    process_table()
        .into_iter()
        .filter(|p| p.parent == parent)
        .map(|p| (p.pid as i32, p.state, p.ticks))
        .collect()
}

/// The Python with the `mcp` package that the README's test command installs.
pub fn python() -> String {
    std::env::var("CODEMODE_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CODEMODE_TEST_PYTHON is not set: run the tests with ./scripts/test, which installs it"
        )
    })
}

/// The `mcpServers` entry of the toy upstream (`tests/upstreams/toy.py`).
pub fn toy() -> Value {
    json!({ "command": python(), "args": [concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upstreams/toy.py")] })
}

/// Writes `config` as `config.json` in `dir`; returns its path.
pub fn write_config(dir: &std::path::Path, config: &Value) -> String {
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

pub struct Server {
    pub client: RunningService<RoleClient, ()>,
    pub pid: u32,
}

/// Starts `codemode-mcp serve` with `args` and completes the MCP handshake.
pub async fn start(args: &[&str]) -> Server {
    let (client, pid) = start_with((), args, &[]).await;
    Server { client, pid }
}

/// [`start`] with a client of the test's own (its capabilities, its notification
/// handlers) and extra environment; also the server's pid.
pub async fn start_with<H: rmcp::ClientHandler>(
    client: H,
    args: &[&str],
    env: &[(&str, &str)],
) -> (RunningService<RoleClient, H>, u32) {
    let mut command = Command::new(BIN);
    command.arg("serve").args(args).env("CODEMODE_LOG", "warn");
    command.envs(env.iter().copied());
    let transport = TokioChildProcess::new(command).expect("spawn codemode-mcp");
    let pid = transport.id().expect("child pid");
    let client = client
        .serve(transport)
        .await
        .expect("MCP handshake with codemode-mcp");
    (client, pid)
}

/// What one `execute_code` call returned, unpacked.
#[derive(Debug)]
pub struct Ran {
    pub is_error: bool,
    pub text: String,
    pub structured: Value,
}

impl Ran {
    pub fn result(&self) -> &Value {
        &self.structured["result"]
    }
    pub fn error_kind(&self) -> &str {
        self.structured["error"]["kind"].as_str().unwrap_or("")
    }
    pub fn error_message(&self) -> &str {
        self.structured["error"]["message"].as_str().unwrap_or("")
    }
    pub fn position(&self) -> (u64, u64) {
        (
            self.structured["error"]["line"].as_u64().unwrap_or(0),
            self.structured["error"]["column"].as_u64().unwrap_or(0),
        )
    }
    pub fn duration_ms(&self) -> u64 {
        self.structured["durationMs"].as_u64().expect("durationMs")
    }
}

/// Calls `execute_code` with `arguments` on any client session.
pub async fn execute_on(client: &rmcp::Peer<RoleClient>, arguments: Value) -> Ran {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object")
    };
    // Generous: a test may run programs with long limits that first wait in a queue.
    let result = tokio::time::timeout(
        Duration::from_secs(180),
        client.call_tool(CallToolRequestParams::new("execute_code").with_arguments(arguments)),
    )
    .await
    .expect("execute_code answered within 180 s")
    .expect("execute_code is a tool result, not a protocol error");
    unpack(result)
}

pub fn unpack(result: CallToolResult) -> Ran {
    let text = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n");
    Ran {
        is_error: result.is_error == Some(true),
        text,
        structured: result.structured_content.expect("structuredContent"),
    }
}

impl Server {
    pub async fn execute(&self, code: &str) -> Ran {
        self.execute_with(json!({ "code": code })).await
    }

    pub async fn execute_with(&self, arguments: Value) -> Ran {
        execute_on(&self.client, arguments).await
    }

    /// The server still answers: the check after every limit.
    pub async fn assert_alive(&self) {
        let ran = self.execute("return 6 * 7").await;
        assert!(!ran.is_error, "server did not recover: {ran:?}");
        assert_eq!(ran.result(), &json!(42));
    }

    /// Peak RSS of the server process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
    }
}

/// A client that hands every progress notification it hears to a channel, introducing
/// itself with `info` (its capabilities).
#[derive(Clone)]
pub struct ProgressListener {
    info: rmcp::model::ClientConfig,
    heard: tokio::sync::mpsc::UnboundedSender<rmcp::model::ProgressNotificationParam>,
}

impl ProgressListener {
    pub fn new(
        info: rmcp::model::ClientConfig,
    ) -> (
        Self,
        tokio::sync::mpsc::UnboundedReceiver<rmcp::model::ProgressNotificationParam>,
    ) {
        let (heard, receiver) = tokio::sync::mpsc::unbounded_channel();
        (Self { info, heard }, receiver)
    }
}

impl rmcp::ClientHandler for ProgressListener {
    fn get_info(&self) -> rmcp::model::ClientConfig {
        self.info.clone()
    }

    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        let _ = self.heard.send(params);
    }
}
