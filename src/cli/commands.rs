//! One function per command.

use std::{io::Read, net::SocketAddr, path::PathBuf};

use anyhow::{Context, Result};
use codemode_mcp::{
    CodeMode, EmbedError,
    config::Config,
    isolation::{Isolation, Layer, PoolSettings, WorkerPool},
    server::{self, CodeModeServer, http::HttpServer},
    typegen,
    upstream::Upstreams,
};
use rmcp::ServiceExt;

use super::args::*;

/// `usage`: the report of the audit log's costs, on stdout.
pub(crate) fn usage(args: &crate::cli::args::UsageArgs) -> Result<()> {
    use codemode_mcp::audit::usage;
    let period = usage::parse_since(&args.since).map_err(anyhow::Error::msg)?;
    let prices = match &args.prices {
        Some(path) => Some(usage::PriceSheet::load(path).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let records = usage::read(&args.files).map_err(anyhow::Error::msg)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let rows = usage::summarize(
        &records,
        now_ms.saturating_sub(period),
        args.by,
        prices.as_ref(),
    );
    let currency = prices.as_ref().and_then(|p| p.currency.as_deref());
    print!("{}", usage::render(&rows, args.by, args.format, currency));
    Ok(())
}

/// `audit verify`: the exit status.
pub(crate) fn audit_verify(files: &[PathBuf], expect_head: Option<&str>) -> i32 {
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

/// Loads the config, connects the upstreams (waiting for each one's first attempt, at
/// most its connect timeout) and starts the isolate threads or the worker pool. Needs a
/// tokio runtime.
pub(crate) async fn codemode(common: &CommonArgs) -> Result<CodeMode> {
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
pub(crate) fn self_test_in_background(codemode: &CodeMode) {
    let Some(pool) = codemode.worker_pool().cloned() else {
        tracing::warn!(
            "--isolation none: programs run inside this process, with no second sandbox around the engine"
        );
        if let Some(kept) = codemode.settings().engine.kept_per_isolate() {
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

pub(crate) async fn serve(args: ServeArgs) -> Result<()> {
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

pub(crate) async fn serve_http(args: ServeArgs, bind: SocketAddr) -> Result<()> {
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
pub(crate) async fn flush_telemetry(codemode: &CodeMode) {
    let oversight = codemode.oversight().clone();
    let _ = tokio::task::spawn_blocking(move || oversight.shutdown()).await;
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub(crate) async fn shutdown_signal() {
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

pub(crate) fn log_settings(codemode: &CodeMode, message: &str) {
    let settings = codemode.settings();
    tracing::info!(
        engine = ?settings.engine.kind(),
        timeout_ms = settings.limits.timeout.as_millis() as u64,
        heap_bytes = settings.limits.heap_bytes,
        concurrency = settings.concurrency,
        queue = settings.queue,
        isolation = if codemode.worker_pool().is_some() { "process" } else { "none" },
        "{message}"
    );
}

pub(crate) async fn run(args: RunArgs) -> Result<i32> {
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
            principal: Some(codemode.local_principal().to_string()),
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

pub(crate) async fn types(args: TypesArgs) -> Result<()> {
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

pub(crate) async fn sandbox_check(args: SandboxCheckArgs) -> Result<i32> {
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

pub(crate) async fn check_config(file: PathBuf) -> Result<i32> {
    let config = Config::load(&file)?;
    codemode_mcp::policy::Policy::new(&config.codemode.policy)?;
    codemode_mcp::tenants::Tenants::new(
        &config.codemode.tenants,
        &config.codemode.limits.limits(),
        &config.codemode.quotas,
    )?;
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
    let quotas = config.codemode.quotas.summary();
    if !quotas.is_empty() {
        println!(
            "quotas of every principal: {}{}",
            quotas.join(", "),
            match &config.codemode.quotas.path {
                Some(path) => format!(" (windows kept in {})", path.display()),
                None => " (windows in memory)".to_string(),
            }
        );
    }
    for (index, tenant) in config.codemode.tenants.iter().enumerate() {
        let mut whom = tenant.principals.clone();
        whom.extend(tenant.scopes.iter().map(|s| format!("scope {s}")));
        println!(
            "{} narrows for: {} ({} rules, default {}{})",
            tenant.label(index),
            whom.join(", "),
            tenant.rules.len(),
            match tenant.default {
                codemode_mcp::config::TenantDefault::Allow => "allow",
                codemode_mcp::config::TenantDefault::Confirm => "confirm",
                codemode_mcp::config::TenantDefault::Deny => "deny",
            },
            match &tenant.egress {
                None => String::new(),
                Some(urls) if urls.is_empty() => ", no fetch".to_string(),
                Some(urls) => format!(", fetch only {}", urls.join(", ")),
            }
        );
        let quotas = tenant.quotas.summary();
        if !quotas.is_empty() {
            println!("{} quotas: {}", tenant.label(index), quotas.join(", "));
        }
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
