//! The command line: every subcommand and flag (clap), and how flags become settings.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use codemode_mcp::{
    CodeMode,
    config::LimitSettings,
    isolation::Isolation,
    sandbox::EngineKind,
    server::http::{ConnectionLimits, HttpOptions, serve_metrics},
};

#[derive(Parser, Debug)]
#[command(
    name = "codemode-mcp",
    version,
    about = "An MCP server that gives LLM agents code mode: one TypeScript program instead of many tool calls, run in a fresh, locked-down JS isolate.",
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
    /// Sum what executions cost, from the audit log: executions, errors, CPU and wall
    /// seconds, tool calls, fetches and bytes, by principal, tool or day (UTC), and their
    /// price by a price sheet.
    Usage(UsageArgs),
    /// Make a bearer token for the principal NAME: prints the token (give it to the
    /// client) and the line of the token file that admits it, which keeps only its hash.
    Token {
        /// The principal's name: letters, digits, `.`, `_`, `@` or `-`.
        name: String,
        /// A scope of the token; repeat for more. `codemode:operator` opens the console
        /// and the metrics.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
    },
}

#[derive(Args, Debug, Default)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(flatten)]
    pub(crate) http: HttpArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum AuditCommand {
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

#[derive(Args, Debug)]
pub(crate) struct UsageArgs {
    /// The audit log files, oldest first (`FILE.2 FILE.1 FILE`).
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// How far back: a number and a unit (s, m, h, d).
    #[arg(long, default_value = "7d", value_name = "PERIOD")]
    pub(crate) since: String,
    /// What each row is.
    #[arg(long, value_enum, default_value = "principal")]
    pub(crate) by: codemode_mcp::audit::usage::UsageBy,
    /// How rows are printed.
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: codemode_mcp::audit::usage::UsageFormat,
    /// A JSON price sheet: {"currency": "USD", "cpuSecond": 0.00002, "perCall":
    /// {"github": 0.001, "*": 0.0001}, "egressGB": 0.09}; adds a price column.
    #[arg(long, value_name = "FILE")]
    pub(crate) prices: Option<PathBuf>,
}

#[derive(Args, Debug, Default)]
pub(crate) struct TypesArgs {
    /// The config file (the same as `--config FILE`; it wins over CODEMODE_CONFIG).
    #[arg(value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// The config file.
    #[arg(long, short = 'c', env = "CODEMODE_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Log at INFO too (CODEMODE_LOG overrides).
    #[arg(short, long)]
    pub(crate) verbose: bool,
}

#[derive(Args, Debug, Default)]
pub(crate) struct SandboxCheckArgs {
    /// JS engine the checked worker runs. Default: quickjs.
    #[arg(long, value_enum)]
    pub(crate) engine: Option<EngineKind>,
    /// Log at INFO too (CODEMODE_LOG overrides).
    #[arg(short, long)]
    pub(crate) verbose: bool,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

#[derive(Args, Debug, Default)]
#[command(next_help_heading = "HTTP serving")]
pub(crate) struct HttpArgs {
    /// Serve MCP over HTTP on ADDR (127.0.0.1:8080 when omitted) instead of stdio:
    /// streamable HTTP at /mcp, legacy SSE at /sse (+ POST /messages), a probe at /healthz.
    /// Port 0 picks a free port, which is logged. Any address but loopback needs an auth
    /// token.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
    pub(crate) http: Option<SocketAddr>,
    /// No sessions: each request stands alone, so replicas behind a load balancer can
    /// share clients; no server notifications (tools/list_changed).
    #[arg(long, requires = "http")]
    pub(crate) stateless: bool,
    /// File holding the bearer tokens, one per line, of which every request must carry one
    /// (`Authorization: Bearer TOKEN`): `NAME sha256:HASH [SCOPE ...]` (what `codemode-mcp
    /// token NAME` prints), or a token alone. Each token is a principal of its own: its
    /// clients see their own state, tasks and approvals only. Only an operator (the scope
    /// codemode:operator; without one, the first token alone) opens the console and the
    /// metrics. The environment variable CODEMODE_AUTH_TOKEN may hold them instead. Also
    /// guards --metrics.
    #[arg(long, value_name = "FILE")]
    pub(crate) auth_token_file: Option<PathBuf>,
    /// Take the access tokens (JWTs) of this OAuth authorization server, as the MCP
    /// authorization spec has a resource server do: signed by a key of its JWKS, issued by
    /// it, for --oauth-resource, unexpired. Their subject is the principal. Serves the
    /// Protected Resource Metadata at /.well-known/oauth-protected-resource.
    #[arg(long, value_name = "URL", requires_all = ["http", "oauth_resource"])]
    pub(crate) oauth_issuer: Option<String>,
    /// This server's resource URI as its clients reach it, e.g.
    /// https://mcp.example.com/mcp: the audience its tokens must name.
    #[arg(long, value_name = "URL", requires = "oauth_issuer")]
    pub(crate) oauth_resource: Option<String>,
    /// A scope every access token must carry to reach /mcp and /sse (403 insufficient_scope
    /// otherwise); repeat for more.
    #[arg(long = "oauth-scope", value_name = "SCOPE", requires = "oauth_issuer")]
    pub(crate) oauth_scopes: Vec<String>,
    /// Where the issuer's keys are, when its metadata does not say.
    #[arg(long, value_name = "URL", requires = "oauth_issuer")]
    pub(crate) oauth_jwks_uri: Option<String>,
    /// An audience taken beside --oauth-resource; repeat for more.
    #[arg(long = "oauth-audience", value_name = "AUD", requires = "oauth_issuer")]
    pub(crate) oauth_audiences: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics beside the MCP server (for a server
    /// on stdio; with --http they are at /metrics anyway). Any address but loopback needs
    /// an auth token.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<SocketAddr>,
    /// A Host name (or name:port) clients use, beside loopback ones; repeat for more, `*`
    /// for any. Other Host headers get 403 (DNS-rebinding protection).
    #[arg(long = "allowed-host", value_name = "HOST", requires = "http")]
    pub(crate) allowed_hosts: Vec<String>,
    /// A browser Origin allowed beside loopback ones, e.g. https://app.example.com or
    /// http://localhost:*; repeat for more, `*` for any. Other origins get 403; requests
    /// without an Origin (non-browser clients) pass.
    #[arg(long = "allowed-origin", value_name = "ORIGIN", requires = "http")]
    pub(crate) allowed_origins: Vec<String>,
    /// Largest request body in KiB; bigger ones get 413. Default 4096.
    #[arg(long, value_name = "KIB", requires = "http")]
    pub(crate) max_body_kib: Option<usize>,
    /// Seconds after which an unused streamable-HTTP session is closed. Default 300.
    #[arg(long, value_name = "SECS", requires = "http")]
    pub(crate) session_idle_secs: Option<u64>,
    /// Executions one session may run at once; past it, `busy`. Default 4. (With
    /// --stateless every request stands alone; only --concurrency and --queue apply.)
    #[arg(long, value_name = "N", requires = "http")]
    pub(crate) session_concurrency: Option<usize>,
    /// Sessions open at once (both transports); past it, new ones get 503. Default 1024.
    #[arg(long, value_name = "N", requires = "http")]
    pub(crate) max_sessions: Option<usize>,
    /// On SIGTERM or SIGINT, seconds to let requests in flight finish before their
    /// executions are stopped (they answer with kind `cancelled`). Default 10.
    #[arg(long, value_name = "SECS", requires = "http")]
    pub(crate) shutdown_grace_secs: Option<u64>,
    /// Seconds a client has to send a request's headers; a slower one is disconnected
    /// (slowloris). Default 10.
    #[arg(long, value_name = "SECS", requires = "http")]
    pub(crate) header_timeout_secs: Option<u64>,
    /// Connections open at once (an SSE stream holds one); past it, new connections wait
    /// until one closes. Default 1024.
    #[arg(long, value_name = "N", requires = "http")]
    pub(crate) max_connections: Option<usize>,
}

impl HttpArgs {
    pub(crate) fn auth_token(&self) -> Result<Option<String>> {
        Ok(match &self.auth_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the auth token file {}", path.display()))?,
            ),
            None => std::env::var("CODEMODE_AUTH_TOKEN").ok(),
        })
    }

    fn oauth(&self) -> Option<codemode_mcp::server::http::OAuthOptions> {
        let issuer = self.oauth_issuer.clone()?;
        let mut options = codemode_mcp::server::http::OAuthOptions::new(
            issuer,
            self.oauth_resource.clone().unwrap_or_default(),
        );
        options.jwks_uri = self.oauth_jwks_uri.clone();
        options.required_scopes = self.oauth_scopes.clone();
        options.audiences = self.oauth_audiences.clone();
        Some(options)
    }

    /// Starts the `--metrics` listener, if asked for.
    pub(crate) async fn serve_metrics(&self, codemode: &CodeMode) -> Result<()> {
        if let Some(bind) = self.metrics {
            let addr = serve_metrics(bind, self.auth_token()?, codemode.clone()).await?;
            tracing::info!("metrics at http://{addr}/metrics");
        }
        Ok(())
    }

    pub(crate) fn options(&self, bind: SocketAddr) -> Result<HttpOptions> {
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
            oauth: self.oauth(),
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
pub(crate) struct RunArgs {
    /// The program file (TypeScript or JavaScript), or `-` for standard input.
    pub(crate) file: PathBuf,
    /// Print the structured output (result, logs, error, durationMs) as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Type-check the program against the tools' declarations first (TypeScript's tsc:
    /// `codemode.typecheck.tsc`, or `tsc` on PATH); with type errors nothing runs.
    #[arg(long)]
    pub(crate) typecheck: bool,
    /// Log at INFO too (CODEMODE_LOG overrides).
    #[arg(short, long)]
    pub(crate) verbose: bool,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(Args, Debug, Default)]
pub(crate) struct CommonArgs {
    /// Config file: Claude Desktop's `mcpServers` format plus a `codemode` section, e.g.
    /// {"codemode": {"limits": {"timeoutMs": 10000}}}. Flags override its values.
    #[arg(long, short = 'c', env = "CODEMODE_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// JS engine that runs programs (the choices are those this binary was built with).
    /// Overrides `codemode.engine`. Default: quickjs.
    #[arg(long, value_enum)]
    pub(crate) engine: Option<EngineKind>,
    /// Where programs run. `process`: each in a fresh worker process locked down with
    /// rlimits, namespaces, Landlock and seccomp, holding no secret. `none`: in this
    /// process, on isolate threads, for embedding and benchmarks only: an engine exploit
    /// would run with the server's rights and reach its credentials.
    #[arg(long, value_enum, default_value_t = Isolation::Process)]
    pub(crate) isolation: Isolation,
    /// Programs one worker process runs before it is replaced. 1 (the default) gives every
    /// program a fresh process; more saves start-up cost for trusted, single-tenant use.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) worker_reuse: u32,
    /// Append a hash-chained JSONL record of every execution to FILE (code, caller, tool
    /// calls with sizes and outcomes, error kind), fsynced before each answer. Check it
    /// with `codemode-mcp audit verify FILE`. Overrides `codemode.audit.path`.
    #[arg(long, value_name = "FILE")]
    pub(crate) audit_log: Option<PathBuf>,
    /// Export traces over OTLP/HTTP to URL (e.g. http://localhost:4318; /v1/traces is
    /// added): a span per execution, a child span per tool call and fetch. Overrides
    /// `codemode.telemetry.otlpEndpoint`; OTEL_EXPORTER_OTLP_ENDPOINT also turns traces on.
    #[arg(long, value_name = "URL")]
    pub(crate) otlp_endpoint: Option<String>,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

#[derive(Args, Debug, Default, Clone, Copy)]
#[command(next_help_heading = "Limits (each run that hits one ends with that limit named)")]
pub(crate) struct LimitArgs {
    /// Wall clock per execution in ms, host calls and timers included; a request's
    /// `timeoutMs` may lower it, never raise it. Default 30000.
    #[arg(long, value_name = "MS")]
    pub(crate) timeout_ms: Option<u64>,
    /// Heap cap per isolate in MiB; a program past it ends with kind `memory`, even if it
    /// catches the out-of-memory error. Default 64.
    #[arg(long, value_name = "MIB")]
    pub(crate) heap_mib: Option<u64>,
    /// JS stack cap in KiB; deeper recursion throws a RangeError. Default 512.
    #[arg(long, value_name = "KIB")]
    pub(crate) stack_kib: Option<u64>,
    /// Captured console output per execution in KiB; the rest is cut with a notice.
    /// Default 1024.
    #[arg(long, value_name = "KIB")]
    pub(crate) output_kib: Option<u64>,
    /// JSON text of the returned value in KiB; a longer result is cut with a notice.
    /// Default 256.
    #[arg(long, value_name = "KIB")]
    pub(crate) result_kib: Option<u64>,
    /// Executions that run at once. Default 2 x cores.
    #[arg(long, value_name = "N")]
    pub(crate) concurrency: Option<u64>,
    /// Executions that may wait for a slot; past that, new ones fail at once with kind
    /// `busy`. Default 16 x cores.
    #[arg(long, value_name = "N")]
    pub(crate) queue: Option<u64>,
    /// Tool calls one execution may make; the calls past it throw a ToolError, and a run
    /// ended by one has kind `budget`. Default 1000.
    #[arg(long, value_name = "N")]
    pub(crate) max_tool_calls: Option<u64>,
    /// Calls of any one tool one execution may make (same effect as --max-tool-calls, per
    /// tool). Default 1000.
    #[arg(long, value_name = "N")]
    pub(crate) max_calls_per_tool: Option<u64>,
    /// Bytes of tool results one execution may receive, in KiB; the call that passes it
    /// and the ones after throw a ToolError (kind `budget` if uncaught). Default 65536.
    #[arg(long, value_name = "KIB")]
    pub(crate) max_received_kib: Option<u64>,
    /// `fetch` requests one execution may make (fetch exists only when
    /// codemode.egress.rules allow some URL). Default 100.
    #[arg(long, value_name = "N")]
    pub(crate) max_fetches: Option<u64>,
    /// Isolates made ahead of their programs, each used once (at most one per slot; 0:
    /// make each isolate when its program arrives). Default: one per slot.
    #[arg(long, value_name = "N")]
    pub(crate) warm_isolates: Option<u64>,
    /// Microseconds a program waiting for a tool call's reply keeps its thread polling
    /// before the thread sleeps (spares each quick reply a thread wake); 0 sleeps at once.
    /// Default 200.
    #[arg(long, value_name = "US")]
    pub(crate) spin_us: Option<u64>,
    /// Characters of one execution's answer a model reads (result, logs, error, calls);
    /// past it each part keeps its head and tail, the notice comes first, and the whole
    /// output stays readable for a while as a resource. Default 24000.
    #[arg(long, value_name = "CHARS")]
    pub(crate) output_chars: Option<u64>,
}

impl LimitArgs {
    pub(crate) fn settings(self) -> LimitSettings {
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
            output_chars: self.output_chars,
            output_keep_ms: None,
            output_keep_mib: None,
        }
    }
}

/// A SHA-256 in hex, as `--expect-head` takes it.
fn parse_head(text: &str) -> std::result::Result<String, String> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err("a SHA-256 in hex (64 digits), as `audit verify` prints it after `head:`".into())
    }
}
