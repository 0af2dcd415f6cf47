//! The `codemode-mcp` command: `serve` (the MCP server on stdio; the default) and `run`
//! (one program, locally, with the same sandbox and limits).

use std::{io::Read, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use codemode_mcp::{
    CodeMode, EmbedError,
    config::{Config, LimitSettings},
    isolation::{Isolation, Layer, PoolSettings, WORKER_COMMAND, WorkerPool},
    sandbox::EngineKind,
    server::{
        self, CodeModeServer,
        http::{ConnectionLimits, HttpOptions, HttpServer, serve_metrics},
    },
    typegen,
    upstream::Upstreams,
};
use rmcp::ServiceExt;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "codemode-mcp",
    version,
    about = "An MCP server that gives LLM agents code mode: one TypeScript program instead of many tool calls, run in a fresh, locked-down JS isolate.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve MCP on stdio (the default when no command is given). Logs go to stderr.
    Serve(Box<ServeArgs>),
    /// Run one program locally with the same sandbox and limits, print its result and logs.
    /// Exits 1 when the program fails, with the same positioned message a model gets.
    Run(RunArgs),
    /// Print the TypeScript declarations of every tool the config's upstreams offer.
    Types(TypesArgs),
    /// Start a sandboxed worker process and report its lockdown, layer by layer, then prove
    /// it: workers that try to open a file, create a socket, start a program or read the
    /// host's environment must be refused. Exits 1 if any layer or proof fails.
    SandboxCheck(SandboxCheckArgs),
    /// Check the audit log's hash chain.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Validate a config file, connect to each upstream and print a table: server,
    /// transport, status, tool count, time to ready. Exits 1 if any upstream is not ready.
    CheckConfig {
        /// The config file.
        file: PathBuf,
        /// Log at INFO too (CODEMODE_LOG overrides).
        #[arg(short, long)]
        verbose: bool,
    },
}

#[derive(Args, Debug, Default)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Verify the chain through FILE... (oldest first: `FILE.2 FILE.1 FILE`) and against
    /// the last file's anchor (`FILE.anchor`); report the first edited, inserted or deleted
    /// record and exit 1, or the records checked and the head (the last record's SHA-256).
    Verify {
        /// The log files, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A head printed by an earlier `audit verify` and kept away from the log: some
        /// record must still hash to it, which a rewrite of the log together with its
        /// anchor cannot fake.
        #[arg(long, value_name = "SHA256", value_parser = parse_head)]
        expect_head: Option<String>,
    },
}

#[derive(Args, Debug, Default)]
struct TypesArgs {
    /// The config file (the same as `--config FILE`; it wins over CODEMODE_CONFIG).
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// The config file.
    #[arg(long, short = 'c', env = "CODEMODE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log at INFO too (CODEMODE_LOG overrides).
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Args, Debug, Default)]
struct SandboxCheckArgs {
    /// JS engine the checked worker runs. Default: quickjs.
    #[arg(long, value_enum)]
    engine: Option<EngineKind>,
    /// Log at INFO too (CODEMODE_LOG overrides).
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args, Debug, Default)]
#[command(next_help_heading = "HTTP serving")]
struct HttpArgs {
    /// Serve MCP over HTTP on ADDR (127.0.0.1:8080 when omitted) instead of stdio:
    /// streamable HTTP at /mcp, legacy SSE at /sse (+ POST /messages), a probe at /healthz.
    /// Port 0 picks a free port, which is logged. Any address but loopback needs an auth
    /// token.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
    http: Option<SocketAddr>,
    /// No sessions: each request stands alone, so replicas behind a load balancer can
    /// share clients; no server notifications (tools/list_changed).
    #[arg(long, requires = "http")]
    stateless: bool,
    /// File holding the bearer tokens, one per line, of which every request must carry one
    /// (`Authorization: Bearer TOKEN`). Each token is a principal of its own: its clients
    /// see their own state, tasks and approvals only. The first is the operator's, the only
    /// one that opens the console (which asks for it once) and the metrics. The
    /// environment variable CODEMODE_AUTH_TOKEN may hold them instead. Also guards
    /// --metrics.
    #[arg(long, value_name = "FILE")]
    auth_token_file: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics beside the MCP server (for a server
    /// on stdio; with --http they are at /metrics anyway). Any address but loopback needs
    /// an auth token.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// A Host name (or name:port) clients use, beside loopback ones; repeat for more, `*`
    /// for any. Other Host headers get 403 (DNS-rebinding protection).
    #[arg(long = "allowed-host", value_name = "HOST", requires = "http")]
    allowed_hosts: Vec<String>,
    /// A browser Origin allowed beside loopback ones, e.g. https://app.example.com or
    /// http://localhost:*; repeat for more, `*` for any. Other origins get 403; requests
    /// without an Origin (non-browser clients) pass.
    #[arg(long = "allowed-origin", value_name = "ORIGIN", requires = "http")]
    allowed_origins: Vec<String>,
    /// Largest request body in KiB; bigger ones get 413. Default 4096.
    #[arg(long, value_name = "KIB", requires = "http")]
    max_body_kib: Option<usize>,
    /// Seconds after which an unused streamable-HTTP session is closed. Default 300.
    #[arg(long, value_name = "SECS", requires = "http")]
    session_idle_secs: Option<u64>,
    /// Executions one session may run at once; past it, `busy`. Default 4. (With
    /// --stateless every request stands alone; only --concurrency and --queue apply.)
    #[arg(long, value_name = "N", requires = "http")]
    session_concurrency: Option<usize>,
    /// Sessions open at once (both transports); past it, new ones get 503. Default 1024.
    #[arg(long, value_name = "N", requires = "http")]
    max_sessions: Option<usize>,
    /// On SIGTERM or SIGINT, seconds to let requests in flight finish before their
    /// executions are stopped (they answer with kind `cancelled`). Default 10.
    #[arg(long, value_name = "SECS", requires = "http")]
    shutdown_grace_secs: Option<u64>,
    /// Seconds a client has to send a request's headers; a slower one is disconnected
    /// (slowloris). Default 10.
    #[arg(long, value_name = "SECS", requires = "http")]
    header_timeout_secs: Option<u64>,
    /// Connections open at once (an SSE stream holds one); past it, new connections wait
    /// until one closes. Default 1024.
    #[arg(long, value_name = "N", requires = "http")]
    max_connections: Option<usize>,
}

impl HttpArgs {
    fn auth_token(&self) -> Result<Option<String>> {
        Ok(match &self.auth_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the auth token file {}", path.display()))?,
            ),
            None => std::env::var("CODEMODE_AUTH_TOKEN").ok(),
        })
    }

    /// Starts the `--metrics` listener, if asked for.
    async fn serve_metrics(&self, codemode: &CodeMode) -> Result<()> {
        if let Some(bind) = self.metrics {
            let addr = serve_metrics(bind, self.auth_token()?, codemode.clone()).await?;
            tracing::info!("metrics at http://{addr}/metrics");
        }
        Ok(())
    }

    fn options(&self, bind: SocketAddr) -> Result<HttpOptions> {
        let defaults = HttpOptions::default();
        let auth_token = self.auth_token()?;
        for (flag, value) in [
            ("--max-body-kib", self.max_body_kib),
            ("--session-concurrency", self.session_concurrency),
            ("--max-sessions", self.max_sessions),
            ("--max-connections", self.max_connections),
            (
                "--header-timeout-secs",
                self.header_timeout_secs.map(|s| s as usize),
            ),
        ] {
            if value == Some(0) {
                anyhow::bail!("{flag} must be at least 1");
            }
        }
        Ok(HttpOptions {
            bind,
            stateless: self.stateless,
            auth_token,
            allowed_hosts: self.allowed_hosts.clone(),
            allowed_origins: self.allowed_origins.clone(),
            max_body_bytes: self
                .max_body_kib
                .map_or(defaults.max_body_bytes, |kib| kib.saturating_mul(1024)),
            session_idle: self
                .session_idle_secs
                .map_or(defaults.session_idle, Duration::from_secs),
            session_concurrency: self
                .session_concurrency
                .unwrap_or(defaults.session_concurrency),
            max_sessions: self.max_sessions.unwrap_or(defaults.max_sessions),
            shutdown_grace: self
                .shutdown_grace_secs
                .map_or(defaults.shutdown_grace, Duration::from_secs),
            connections: ConnectionLimits {
                header_read: self
                    .header_timeout_secs
                    .map_or(defaults.connections.header_read, Duration::from_secs),
                max_connections: self
                    .max_connections
                    .unwrap_or(defaults.connections.max_connections),
            },
        })
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The program file (TypeScript or JavaScript), or `-` for standard input.
    file: PathBuf,
    /// Print the structured output (result, logs, error, durationMs) as JSON.
    #[arg(long)]
    json: bool,
    /// Type-check the program against the tools' declarations first (TypeScript's tsc:
    /// `codemode.typecheck.tsc`, or `tsc` on PATH); with type errors nothing runs.
    #[arg(long)]
    typecheck: bool,
    /// Log at INFO too (CODEMODE_LOG overrides).
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug, Default)]
struct CommonArgs {
    /// Config file: Claude Desktop's `mcpServers` format plus a `codemode` section, e.g.
    /// {"codemode": {"limits": {"timeoutMs": 10000}}}. Flags override its values.
    #[arg(long, short = 'c', env = "CODEMODE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// JS engine that runs programs (the choices are those this binary was built with).
    /// Overrides `codemode.engine`. Default: quickjs.
    #[arg(long, value_enum)]
    engine: Option<EngineKind>,
    /// Where programs run. `process`: each in a fresh worker process locked down with
    /// rlimits, namespaces, Landlock and seccomp, holding no secret. `none`: in this
    /// process, on isolate threads, for embedding and benchmarks only: an engine exploit
    /// would run with the server's rights and reach its credentials.
    #[arg(long, value_enum, default_value_t = Isolation::Process)]
    isolation: Isolation,
    /// Programs one worker process runs before it is replaced. 1 (the default) gives every
    /// program a fresh process; more saves start-up cost for trusted, single-tenant use.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    worker_reuse: u32,
    /// Append a hash-chained JSONL record of every execution to FILE (code, caller, tool
    /// calls with sizes and outcomes, error kind), fsynced before each answer. Check it
    /// with `codemode-mcp audit verify FILE`. Overrides `codemode.audit.path`.
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    /// Export traces over OTLP/HTTP to URL (e.g. http://localhost:4318; /v1/traces is
    /// added): a span per execution, a child span per tool call and fetch. Overrides
    /// `codemode.telemetry.otlpEndpoint`; OTEL_EXPORTER_OTLP_ENDPOINT also turns traces on.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args, Debug, Default, Clone, Copy)]
#[command(next_help_heading = "Limits (each run that hits one ends with that limit named)")]
struct LimitArgs {
    /// Wall clock per execution in ms, host calls and timers included; a request's
    /// `timeoutMs` may lower it, never raise it. Default 30000.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Heap cap per isolate in MiB; a program past it ends with kind `memory`, even if it
    /// catches the out-of-memory error. Default 64.
    #[arg(long, value_name = "MIB")]
    heap_mib: Option<u64>,
    /// JS stack cap in KiB; deeper recursion throws a RangeError. Default 512.
    #[arg(long, value_name = "KIB")]
    stack_kib: Option<u64>,
    /// Captured console output per execution in KiB; the rest is cut with a notice.
    /// Default 1024.
    #[arg(long, value_name = "KIB")]
    output_kib: Option<u64>,
    /// JSON text of the returned value in KiB; a longer result is cut with a notice.
    /// Default 256.
    #[arg(long, value_name = "KIB")]
    result_kib: Option<u64>,
    /// Executions that run at once. Default 2 x cores.
    #[arg(long, value_name = "N")]
    concurrency: Option<u64>,
    /// Executions that may wait for a slot; past that, new ones fail at once with kind
    /// `busy`. Default 16 x cores.
    #[arg(long, value_name = "N")]
    queue: Option<u64>,
    /// Tool calls one execution may make; the calls past it throw a ToolError, and a run
    /// ended by one has kind `budget`. Default 1000.
    #[arg(long, value_name = "N")]
    max_tool_calls: Option<u64>,
    /// Calls of any one tool one execution may make (same effect as --max-tool-calls, per
    /// tool). Default 1000.
    #[arg(long, value_name = "N")]
    max_calls_per_tool: Option<u64>,
    /// Bytes of tool results one execution may receive, in KiB; the call that passes it
    /// and the ones after throw a ToolError (kind `budget` if uncaught). Default 65536.
    #[arg(long, value_name = "KIB")]
    max_received_kib: Option<u64>,
    /// `fetch` requests one execution may make (fetch exists only when
    /// codemode.egress.rules allow some URL). Default 100.
    #[arg(long, value_name = "N")]
    max_fetches: Option<u64>,
    /// Isolates made ahead of their programs, each used once (at most one per slot; 0:
    /// make each isolate when its program arrives). Default: one per slot.
    #[arg(long, value_name = "N")]
    warm_isolates: Option<u64>,
    /// Microseconds a program waiting for a tool call's reply keeps its thread polling
    /// before the thread sleeps (spares each quick reply a thread wake); 0 sleeps at once.
    /// Default 200.
    #[arg(long, value_name = "US")]
    spin_us: Option<u64>,
}

impl LimitArgs {
    fn settings(self) -> LimitSettings {
        LimitSettings {
            timeout_ms: self.timeout_ms,
            heap_mib: self.heap_mib,
            stack_kib: self.stack_kib,
            output_kib: self.output_kib,
            result_kib: self.result_kib,
            concurrency: self.concurrency,
            queue: self.queue,
            tool_calls: self.max_tool_calls,
            calls_per_tool: self.max_calls_per_tool,
            received_kib: self.max_received_kib,
            fetches: self.max_fetches,
            warm_isolates: self.warm_isolates,
            spin_micros: self.spin_us,
        }
    }
}

fn main() {
    if let Err(err) = dispatch() {
        // The error and its causes, never a backtrace (RUST_BACKTRACE is for panics): what
        // went wrong is in the words, not in our stack.
        let said = err.to_string();
        eprintln!("Error: {said}");
        // A cause the message already quotes is not said twice.
        for cause in err.chain().skip(1).map(|c| c.to_string()) {
            if !said.contains(&cause) {
                eprintln!("  caused by: {cause}");
            }
        }
        std::process::exit(1);
    }
}

fn dispatch() -> Result<()> {
    codemode_mcp::sandbox::configure_process_environment();
    // A worker process locks itself down before anything else runs (no thread may exist).
    let mut args = std::env::args();
    if args.nth(1).as_deref() == Some(WORKER_COMMAND) {
        let spec = args.next().unwrap_or_default();
        std::process::exit(codemode_mcp::isolation::worker_main(&spec));
    }
    let mut cli = Cli::parse();
    if let Some(Command::Types(args)) = &mut cli.command
        && let Some(file) = args.file.take()
    {
        args.config = Some(file);
    }
    // A server logs what it does; a one-off command prints its answer, and logs only
    // warnings unless asked.
    let quiet = match &cli.command {
        None | Some(Command::Serve(_)) | Some(Command::Audit(_)) => false,
        Some(Command::Run(args)) => !args.verbose,
        Some(Command::Types(args)) => !args.verbose,
        Some(Command::SandboxCheck(args)) => !args.verbose,
        Some(Command::CheckConfig { verbose, .. }) => !verbose,
    };
    let default_filter = if quiet { "warn" } else { "info,rmcp=warn" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            EnvFilter::try_from_env("CODEMODE_LOG")
                .unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        None => runtime.block_on(serve(cli.serve)),
        Some(Command::Serve(args)) => runtime.block_on(serve(*args)),
        Some(Command::Run(args)) => {
            let code = runtime.block_on(run(args))?;
            std::process::exit(code);
        }
        Some(Command::Types(args)) => runtime.block_on(types(args)),
        Some(Command::Audit(AuditCommand::Verify { files, expect_head })) => {
            std::process::exit(audit_verify(&files, expect_head.as_deref()))
        }
        Some(Command::SandboxCheck(args)) => {
            let code = runtime.block_on(sandbox_check(args))?;
            std::process::exit(code);
        }
        Some(Command::CheckConfig { file, .. }) => {
            let code = runtime.block_on(check_config(file))?;
            std::process::exit(code);
        }
    }
}

/// `audit verify`: the exit status.
fn audit_verify(files: &[PathBuf], expect_head: Option<&str>) -> i32 {
    use codemode_mcp::audit::{self, AnchorCheck};
    let verified = match audit::verify_expecting(files, expect_head) {
        Ok(verified) => verified,
        Err(broken) => {
            println!("audit chain BROKEN at {broken}");
            return 1;
        }
    };
    println!(
        "audit chain intact: {} records (seq {} to {}){}",
        verified.records,
        verified.first_seq,
        verified.last_seq,
        if verified.torn_tail {
            "; a torn last line (a crash while writing) was ignored"
        } else {
            ""
        }
    );
    match &verified.anchor {
        AnchorCheck::Matched {
            path,
            head_seq,
            past,
        } => {
            println!(
                "anchored: it starts and ends where {} says (last record {head_seq}){}",
                path.display(),
                match past {
                    0 => String::new(),
                    n => format!(
                        "; {n} record(s) past it, written since or not yet anchored at a crash"
                    ),
                }
            );
        }
        AnchorCheck::Missing { path } => println!(
            "warning: no anchor file {}: records deleted from the end or the start cannot be detected without it",
            path.display()
        ),
    }
    println!(
        "head: record {} sha256 {} (kept elsewhere, `--expect-head` checks against it later)",
        verified.last_seq, verified.head_sha256
    );
    if let Some(seq) = verified.expected_seq {
        println!("the expected head is record {seq}");
    }
    0
}

/// A SHA-256 in hex, as `--expect-head` takes it.
fn parse_head(text: &str) -> std::result::Result<String, String> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err("a SHA-256 in hex (64 digits), as `audit verify` prints it after `head:`".into())
    }
}

/// Loads the config, connects the upstreams (waiting for each one's first attempt, at
/// most its connect timeout) and starts the isolate threads or the worker pool. Needs a
/// tokio runtime.
async fn codemode(common: &CommonArgs) -> Result<CodeMode> {
    common.limits.settings().validate("command line")?;
    let mut builder = CodeMode::builder()
        .limits(common.limits.settings())
        .isolation(common.isolation)
        .worker_reuse(common.worker_reuse);
    if let Some(engine) = common.engine {
        builder = builder.engine(engine);
    }
    if let Some(path) = &common.config {
        builder = builder.config_file(path)?;
    }
    if let Some(path) = &common.audit_log {
        builder = builder.audit_log(path);
    }
    if let Some(endpoint) = &common.otlp_endpoint {
        builder = builder.otlp_endpoint(endpoint);
    }
    let codemode = match builder.build().await {
        Ok(codemode) => codemode,
        Err(EmbedError::Isolation(err)) => {
            return Err(anyhow::Error::new(err).context(
                "process isolation is not possible on this machine; `--isolation none` runs programs in this process instead (no second sandbox around the engine)",
            ));
        }
        Err(err) => return Err(err.into()),
    };
    if let Some(report) = codemode.lockdown() {
        for (layer, state) in [
            ("rlimits", &report.rlimits),
            ("namespaces", &report.namespaces),
            ("landlock", &report.landlock),
            ("seccomp", &report.seccomp),
        ] {
            match state {
                Layer::Enforced(what) => tracing::debug!("worker lockdown, {layer}: {what}"),
                Layer::Unavailable(why) => {
                    tracing::warn!("worker lockdown, {layer}: UNAVAILABLE on this machine: {why}")
                }
            }
        }
    }
    Ok(codemode)
}

/// The startup self-test: workers that try forbidden things must be refused. Runs in the
/// background; its report is logged.
fn self_test_in_background(codemode: &CodeMode) {
    let Some(pool) = codemode.executor().worker_pool().cloned() else {
        tracing::warn!(
            "--isolation none: programs run inside this process, with no second sandbox around the engine"
        );
        if let Some(kept) = codemode.executor().settings().engine.kept_per_isolate() {
            tracing::warn!(
                "--isolation none: this engine keeps ~{} of every isolate for the life of the process (a defect of deno_core's QuickJS-ng backend); a server that runs many programs needs the default process isolation, where a worker's memory goes with it",
                codemode_mcp::sandbox::human_bytes(kept)
            );
        }
        return;
    };
    tokio::spawn(async move {
        let mut proven = Vec::new();
        for (attempt, verdict) in pool.self_test().await {
            match verdict {
                Ok(_) => proven.push(attempt),
                Err(how) => tracing::error!("worker lockdown self-test: try to {attempt}: {how}"),
            }
        }
        tracing::info!(
            "worker lockdown self-test: refused to {}",
            proven.join(", ")
        );
    });
}

async fn serve(args: ServeArgs) -> Result<()> {
    if let Some(bind) = args.http.http {
        return serve_http(args, bind).await;
    }
    // Before anything can print: the protocol owns a private copy of stdout.
    let protocol_out = codemode_mcp::stdio::take_stdout().context("guarding stdout")?;
    let codemode = codemode(&args.common).await?;
    args.http.serve_metrics(&codemode).await?;
    log_settings(&codemode, "codemode-mcp serving MCP on stdio");
    self_test_in_background(&codemode);
    let transport = (tokio::io::stdin(), tokio::fs::File::from_std(protocol_out));
    let service = CodeModeServer::new(codemode.clone())
        .serve(transport)
        .await
        .context("MCP initialisation on stdio")?;
    service.waiting().await?;
    flush_telemetry(&codemode).await;
    Ok(())
}

async fn serve_http(args: ServeArgs, bind: SocketAddr) -> Result<()> {
    let options = args.http.options(bind)?;
    // Refuse a bad setup (no token on a public address) before connecting upstreams.
    let server = HttpServer::bind(options.clone()).await?;
    let codemode = codemode(&args.common).await?;
    let addr = server.local_addr()?;
    args.http.serve_metrics(&codemode).await?;
    log_settings(&codemode, "codemode-mcp serving MCP over HTTP");
    self_test_in_background(&codemode);
    tracing::info!(
        stateless = options.stateless,
        auth = options.auth_token.is_some(),
        "listening on http://{addr}: streamable HTTP at http://{addr}/mcp, legacy SSE at http://{addr}/sse, health at http://{addr}/healthz, metrics at http://{addr}/metrics, the console at http://{addr}/console"
    );
    if options.auth_token.is_none() {
        tracing::warn!(
            "no auth token: any program on this machine can use this server; give one with --auth-token-file"
        );
    }
    server.serve(codemode.clone(), shutdown_signal()).await?;
    flush_telemetry(&codemode).await;
    Ok(())
}

/// Sends the traces still buffered before the process ends.
async fn flush_telemetry(codemode: &CodeMode) {
    let executor = codemode.executor().clone();
    let _ = tokio::task::spawn_blocking(move || executor.oversight().shutdown()).await;
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!("cannot watch for SIGTERM ({err}); only Ctrl-C stops the server");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

fn log_settings(codemode: &CodeMode, message: &str) {
    let executor = codemode.executor();
    let settings = executor.settings();
    tracing::info!(
        engine = ?settings.engine.kind(),
        timeout_ms = settings.limits.timeout.as_millis() as u64,
        heap_bytes = settings.limits.heap_bytes,
        concurrency = settings.concurrency,
        queue = settings.queue,
        isolation = if executor.worker_pool().is_some() { "process" } else { "none" },
        "{message}"
    );
}

async fn run(args: RunArgs) -> Result<i32> {
    let code = if args.file.as_os_str() == "-" {
        let mut code = String::new();
        std::io::stdin()
            .read_to_string(&mut code)
            .context("reading the program from standard input")?;
        code
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let codemode = codemode(&args.common).await?;
    let options = codemode_mcp::executor::RunOptions {
        origin: Some(codemode_mcp::audit::Origin {
            transport: "cli".into(),
            ..Default::default()
        }),
        typecheck: args.typecheck.then_some(true),
        ..Default::default()
    };
    let execution = codemode.execute_with(&code, options).await;
    flush_telemetry(&codemode).await;
    let output = server::render_output(&execution);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&output)?);
    } else {
        let text = server::render_text(&execution, &output);
        if output.error.is_some() {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }
    Ok(if output.error.is_some() { 1 } else { 0 })
}

async fn types(args: TypesArgs) -> Result<()> {
    // Nothing runs: no worker process is needed (nor possible on every machine).
    let codemode = codemode(&CommonArgs {
        config: args.config,
        isolation: Isolation::None,
        worker_reuse: 1,
        ..CommonArgs::default()
    })
    .await?;
    let catalog = codemode.catalog();
    print!("{}", typegen::all_declarations(&catalog));
    for namespace in catalog.namespaces() {
        if namespace.status != codemode_mcp::upstream::Status::Ready {
            eprintln!("{}: {}", namespace.upstream, namespace.status);
        }
    }
    Ok(())
}

async fn sandbox_check(args: SandboxCheckArgs) -> Result<i32> {
    let (pool, report) = match WorkerPool::start(PoolSettings {
        program: std::env::current_exe().context("locating this binary to start workers")?,
        engine: args.engine.unwrap_or_default(),
        limits: args.limits.settings().limits(),
        size: 0,
        reuse: 1,
        warm: false,
        spin: codemode_mcp::sandbox::SPIN,
        time_zone: "UTC".to_string(),
    })
    .await
    {
        Ok(started) => started,
        Err(err) => {
            println!("worker: FAILED: {err}");
            return Ok(1);
        }
    };
    println!("{report}");
    let mut sound = report.complete();
    for (attempt, verdict) in pool.self_test().await {
        match verdict {
            Ok(how) => println!("try to {attempt}: {how}"),
            Err(how) => {
                sound = false;
                println!("try to {attempt}: FAILED: {how}");
            }
        }
    }
    println!(
        "{}",
        if sound {
            "lockdown: complete"
        } else {
            "lockdown: INCOMPLETE (see above)"
        }
    );
    Ok(if sound { 0 } else { 1 })
}

async fn check_config(file: PathBuf) -> Result<i32> {
    let config = Config::load(&file)?;
    codemode_mcp::policy::Policy::new(&config.codemode.policy)?;
    let egress = codemode_mcp::egress::Egress::new(&config.codemode.egress, &|name| {
        std::env::var(name).ok()
    })?;
    println!("{}: valid", file.display());
    for warning in &config.warnings {
        println!("warning: {warning}");
    }
    match &egress {
        Some(egress) => println!("fetch allowed to: {}", egress.allowed().join(", ")),
        None => println!("fetch is off (no codemode.egress.rules)"),
    }
    if config.upstreams.is_empty() && config.skipped.is_empty() {
        println!("no upstream servers configured");
        return Ok(0);
    }
    let upstreams = Upstreams::connect(&config.upstreams, config.codemode.upstream).await;
    println!(
        "{:<24} {:<9} {:>5} {:>10}  status",
        "server", "transport", "tools", "ready"
    );
    for skipped in &config.skipped {
        println!(
            "{:<24} {:<9} {:>5} {:>10}  {}",
            skipped.name, "stdio", "-", "-", skipped.reason
        );
    }
    let mut all_ready = true;
    for upstream in upstreams.iter() {
        let s = upstream.snapshot();
        all_ready &= s.status == codemode_mcp::upstream::Status::Ready;
        let ready = s
            .ready_in
            .map_or("-".to_string(), |d| format!("{} ms", d.as_millis()));
        println!(
            "{:<24} {:<9} {:>5} {:>10}  {}{}",
            s.name,
            s.transport,
            s.tools.len(),
            ready,
            s.status,
            s.last_words
        );
    }
    Ok(if all_ready { 0 } else { 1 })
}
