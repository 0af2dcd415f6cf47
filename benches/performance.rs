//! The performance benchmark: every figure beside its baseline, measured in the same run.
//! `./scripts/bench` (installs the reference servers, then `cargo bench --bench
//! performance`; `-- --quick` for a shorter run).
//!
//! - isolate ready-to-run: a bare QuickJS runtime + context (baseline), the glue compiled
//!   from source, the glue loaded from bytecode (a cold isolate), and from the warm pool;
//! - a trivial `execute_code` round trip through the real binary over stdio and streamable
//!   HTTP, and throughput at 1, 2, 8 and 32 concurrent clients;
//! - one tool call from a program into a built-in tool, and into an upstream over stdio
//!   against a direct MCP client call to the same upstream;
//! - RSS per live isolate, and after 1,000 and 10,000 executions (flat means no leak);
//! - the token suite (`examples/scenarios`) and the cost of discovery on a 220-tool catalog;
//! - baseline: spawning `node -e 0` as a fresh process.

mod common;
#[path = "../examples/scenarios/mod.rs"]
mod scenarios;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use codemode_mcp::{
    BuiltinTool, CodeMode,
    catalog::Detail,
    config::Config,
    executor::{Executor, ExecutorSettings},
    sandbox::{CancelHandle, Engine, Limits, NoTools, RunRequest, glue_module_source},
    server::{execute_code_description, search_answer},
    transpile::{line_count, transpile},
    typegen,
};
use common::{cores, cpu_model, ms, percentiles, ratio, rss_kib};
use rmcp::{
    Peer, RoleClient, ServiceExt,
    model::CallToolRequestParams,
    transport::{StreamableHttpClientTransport, TokioChildProcess},
};
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "codemode-mcp performance benchmark ({} mode)",
        if quick { "quick" } else { "full" }
    );
    println!("machine: {} cores, {}", cores(), cpu_model());
    println!();

    // 1. Isolates, measured on this thread.
    let engine = Engine::default();
    let request = request("return 1")?;
    let cancel = CancelHandle::default();
    let n = 5_000 / scale;
    let bare = sample(n, || {
        runtime.block_on(async {
            let rt = rquickjs::AsyncRuntime::new().expect("runtime");
            let ctx = rquickjs::AsyncContext::full(&rt).await.expect("context");
            ctx.with(|ctx| ctx.eval::<i32, _>("1").expect("eval")).await;
        })
    });
    let source = glue_module_source();
    let from_source = sample(n / 5, || {
        runtime.block_on(async {
            let rt = rquickjs::AsyncRuntime::new().expect("runtime");
            let ctx = rquickjs::AsyncContext::full(&rt).await.expect("context");
            ctx.with(|ctx| {
                rquickjs::Module::declare(ctx, "glue", source.as_str()).expect("glue compiles");
            })
            .await;
        })
    });
    // Made and kept, then dropped outside the timing: ready-to-run is the making only.
    let mut cold_ready = Vec::with_capacity(n);
    let mut kept = Vec::with_capacity(100);
    for _ in 0..n {
        let started = Instant::now();
        let warm = runtime.block_on(engine.prepare(&request));
        cold_ready.push(started.elapsed());
        kept.push(warm);
        if kept.len() == 100 {
            kept.clear();
        }
    }
    drop(kept);
    let cold_run = sample(n, || {
        let outcome = runtime.block_on(engine.run(&request, &cancel, Arc::new(NoTools)));
        assert!(outcome.result.is_ok());
    });
    // As the isolate threads do: the answer first, the isolate freed after.
    let mut warm_run = Vec::with_capacity(n);
    let mut warm_answered = Vec::with_capacity(n);
    for _ in 0..n {
        let warm = runtime.block_on(engine.prepare(&request));
        let started = Instant::now();
        let (outcome, retired) =
            runtime.block_on(engine.run_then_retire(warm, &request, &cancel, Arc::new(NoTools)));
        warm_answered.push(started.elapsed());
        drop(retired);
        warm_run.push(started.elapsed());
        assert!(outcome.result.is_ok());
    }
    println!("isolate ready-to-run ({n} each):");
    row(
        "bare QuickJS runtime + context, no glue (baseline)",
        &bare,
        None,
    );
    row("cold, glue compiled from source", &from_source, Some(&bare));
    row(
        "cold, glue from bytecode (a fresh isolate)",
        &cold_ready,
        Some(&bare),
    );
    println!(
        "  target: cold p50 < 0.200 ms; Cloudflare quotes < 5 ms for V8 isolates, a container ~500 ms"
    );
    println!("a whole program `return 1` in its isolate (ready + run + drop):");
    row("cold isolate", &cold_run, None);
    row(
        "from the warm pool, to the answer (then freed)",
        &warm_answered,
        Some(&cold_run),
    );
    row(
        "from the warm pool, freeing included",
        &warm_run,
        Some(&cold_run),
    );
    println!("  target: from the pool p50 < 0.050 ms");

    // Baseline: a fresh Node.js process.
    let node = (0..(20 / scale.min(2)))
        .map(|_| {
            let started = Instant::now();
            Command::new("node")
                .args(["-e", "0"])
                .status()
                .ok()
                .filter(|s| s.success())?;
            Some(started.elapsed())
        })
        .collect::<Option<Vec<_>>>();
    match node {
        Some(mut node) => {
            let (node_p50, _) = percentiles(&mut node);
            let (cold_p50, _) = percentiles(&mut cold_run.clone());
            println!(
                "baseline, spawn `node -e 0`: p50 {} ({:.0}x a cold isolate's whole program)",
                ms(node_p50),
                ratio(node_p50, cold_p50)
            );
        }
        None => println!("baseline, spawn `node -e 0`: node not found on PATH, skipped"),
    }
    println!();

    // 2. execute_code round trips over stdio and streamable HTTP, through the real binary.
    let binary = env!("CARGO_BIN_EXE_codemode-mcp");
    let calls = 2_000 / scale;
    for isolation in ["none", "process"] {
        let mut trips = runtime.block_on(async {
            let mut command = tokio::process::Command::new(binary);
            command
                .args(["serve", "--isolation", isolation])
                .env("CODEMODE_LOG", "warn");
            let client = ().serve(TokioChildProcess::new(command)?).await?;
            let trips = round_trips(&client, calls).await?;
            client.cancel().await?;
            anyhow::Ok(trips)
        })?;
        let (p50, p99) = percentiles(&mut trips);
        println!(
            "execute_code `return 1` over stdio, --isolation {isolation} ({calls} calls): p50 {}  p99 {}   (target p50 < 1 ms)",
            ms(p50),
            ms(p99)
        );
    }
    let mut server = Command::new(binary)
        .args(["serve", "--http", "127.0.0.1:0"])
        .env("CODEMODE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let addr = listening_address(server.stderr.take().expect("piped stderr"))?;
    let url = format!("http://{addr}/mcp");
    let mut http_trips = runtime.block_on(async {
        let client = ().serve(StreamableHttpClientTransport::from_uri(url.clone())).await?;
        let trips = round_trips(&client, calls).await?;
        client.cancel().await?;
        anyhow::Ok(trips)
    })?;
    let (http_p50, http_p99) = percentiles(&mut http_trips);
    println!(
        "execute_code `return 1` over streamable HTTP, --isolation process ({calls} calls, one session): p50 {}  p99 {}",
        ms(http_p50),
        ms(http_p99)
    );
    println!("throughput over streamable HTTP, --isolation process, one session per client:");
    let mut single = 0.0;
    for clients in [1usize, 2, 8, 32] {
        let per_client = (400 / scale).max(20) / clients.min(8);
        let (done, took) = runtime.block_on(throughput(&url, clients, per_client))?;
        let rate = done as f64 / took.as_secs_f64();
        if clients == 1 {
            single = rate;
        }
        println!(
            "  {clients:>2} clients: {rate:>7.0} executions/s ({:.2}x one client; {done} in {:.2} s)",
            rate / single,
            took.as_secs_f64()
        );
    }
    server.kill()?;
    server.wait()?;
    println!();

    // 3. One tool call: a built-in tool, and an upstream over stdio against a direct call.
    let builtin_per_call = runtime.block_on(builtin_call_cost(1_000 / scale))?;
    println!(
        "one call from a program into a built-in tool (no upstream): {:.1} us of own overhead   (target < 20 us)",
        builtin_per_call.as_secs_f64() * 1e6
    );
    match scenarios::npm_bin() {
        Some(npm_bin) => {
            let (direct, host, through, unspun) =
                runtime.block_on(upstream_call_cost(&npm_bin, 300 / scale))?;
            println!(
                "one call to server-everything `echo` over stdio (median of 7 alternating rounds):\n  the host's own rmcp call to the server process programs use: {:.1} us; from a program, to the same process: {:.1} us ({:.2}x, {:+.1} us own overhead; target <= 1.2x, < 20 us)\n  the same from a program whose thread sleeps at once while it waits (--spin-us 0): {:.1} us ({:.2}x, {:+.1} us)\n  a direct rmcp client with a server process of its own: {:.1} us (two processes of one server differ by more than the overhead, so the same process is the baseline)",
                host.as_secs_f64() * 1e6,
                through.as_secs_f64() * 1e6,
                ratio(through, host),
                (through.as_secs_f64() - host.as_secs_f64()) * 1e6,
                unspun.as_secs_f64() * 1e6,
                ratio(unspun, host),
                (unspun.as_secs_f64() - host.as_secs_f64()) * 1e6,
                direct.as_secs_f64() * 1e6,
            );
        }
        None => println!(
            "upstream call: the reference servers are not installed (./scripts/bench installs them), skipped"
        ),
    }
    println!();

    // 4. Memory.
    let live = 500 / scale;
    let before = rss_kib();
    let held: Vec<_> = (0..live)
        .filter_map(|_| runtime.block_on(engine.prepare(&request)))
        .collect();
    let per_isolate = (rss_kib().saturating_sub(before)) as f64 / held.len() as f64;
    drop(held);
    println!(
        "RSS per live isolate (glue installed), {live} held at once: {per_isolate:.0} KiB   (target < 512 KiB)"
    );
    let executor = runtime.block_on(async { Executor::new(ExecutorSettings::default()) })?;
    let total = 10_000 / scale;
    let program = "const xs = Array.from({ length: 200 }, (_, i) => ({ i, s: 'v' + i }));\nconsole.log(xs.length);\nreturn xs.filter((x) => x.i % 2).length;";
    let (after_1000, after_total) = runtime.block_on(async {
        let mut after_1000 = 0;
        for i in 1..=total {
            let run = executor.execute(program, None).await;
            assert!(run.outcome.result.is_ok());
            if i == total / 10 {
                after_1000 = rss_kib();
            }
        }
        (after_1000, rss_kib())
    });
    println!(
        "RSS after {} executions: {after_1000} KiB; after {total}: {after_total} KiB (ratio {:.3}, {:+} KiB: flat = no leak)",
        total / 10,
        after_total as f64 / after_1000 as f64,
        after_total as i64 - after_1000 as i64
    );
    println!();

    // 5. Tokens: the scenario suite, and the cost of discovery.
    match scenarios::npm_bin() {
        Some(npm_bin) => {
            let reports = runtime.block_on(async {
                let lab = scenarios::Lab::start(&npm_bin).await?;
                let reports = lab.run_all().await;
                lab.stop().await;
                reports
            })?;
            scenarios::print(&reports);
        }
        None => println!(
            "token suite: the reference servers are not installed (./scripts/bench installs them), skipped"
        ),
    }
    println!();
    runtime.block_on(discovery_cost())?;
    println!();
    runtime.block_on(typecheck_cost(20 / scale.min(4)))?;
    Ok(())
}

/// What `typecheck: true` adds to an execution: the same program against a built-in tool,
/// checked and not, in alternating rounds (TypeScript 7's native `tsc`, from
/// `CODEMODE_TEST_TSC` as scripts/setup installs it, else `tsc` on `PATH`).
async fn typecheck_cost(rounds: usize) -> anyhow::Result<()> {
    let tsc = std::env::var("CODEMODE_TEST_TSC").ok();
    let typecheck = match &tsc {
        Some(tsc) => json!({ "tsc": tsc }),
        None => json!({}),
    };
    let config = Config::parse(
        &json!({ "codemode": { "typecheck": typecheck } }).to_string(),
        "the benchmark",
    )?;
    let codemode = CodeMode::builder()
        .config(config)
        .tool("bench", ping())
        .build()
        .await?;
    let program = "type Row = { i: number; square: number };\nconst rows: Row[] = [];\nfor (let i = 0; i < 10; i++) {\n  const n: number = await tools.bench.ping({ n: i });\n  rows.push({ i, square: n * n });\n}\nreturn rows.filter((r) => r.square % 2 === 0).length;";
    let run = |typecheck| {
        let codemode = codemode.clone();
        async move {
            let started = Instant::now();
            let run = codemode
                .execute_with(
                    program,
                    codemode_mcp::executor::RunOptions {
                        typecheck: Some(typecheck),
                        ..Default::default()
                    },
                )
                .await;
            (started.elapsed(), run)
        }
    };
    let (_, probe) = run(true).await;
    if let Err(error) = &probe.outcome.result {
        println!("type check: {} (skipped)", error.message);
        return Ok(());
    }
    let (mut plain, mut checked) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        plain.push(run(false).await.0);
        checked.push(run(true).await.0);
    }
    println!(
        "type check (typecheck: true), a 7-line program with 10 tool calls, {rounds} runs each, tsc {}:",
        tsc.as_deref().unwrap_or("from PATH")
    );
    row("without the check (baseline)", &plain, None);
    row("with the check", &checked, Some(&plain));
    Ok(())
}

fn request(code: &str) -> anyhow::Result<RunRequest> {
    Ok(RunRequest {
        js: transpile(code)?.js,
        program_lines: line_count(code),
        bindings: Vec::new(),
        fetch: false,
        limits: Limits::default(),
    })
}

fn sample(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect()
}

fn row(label: &str, samples: &[Duration], baseline: Option<&[Duration]>) {
    let (p50, p99) = percentiles(&mut samples.to_vec());
    let versus = baseline.map_or(String::new(), |b| {
        let (b50, _) = percentiles(&mut b.to_vec());
        format!("  ({:.2}x)", ratio(p50, b50))
    });
    println!("  {label:<52} p50 {}  p99 {}{versus}", ms(p50), ms(p99));
}

/// `clients` sessions each running `per_client` executions at once; how many ended and how
/// long it took.
async fn throughput(
    url: &str,
    clients: usize,
    per_client: usize,
) -> anyhow::Result<(usize, Duration)> {
    let mut sessions = Vec::new();
    for _ in 0..clients {
        sessions.push(
            ().serve(StreamableHttpClientTransport::from_uri(url.to_string()))
                .await?,
        );
    }
    let started = Instant::now();
    let runs = sessions.iter().map(|client| async move {
        let mut done = 0;
        for _ in 0..per_client {
            let serde_json::Value::Object(arguments) = json!({ "code": "return 1" }) else {
                unreachable!()
            };
            let result = client
                .call_tool(CallToolRequestParams::new("execute_code").with_arguments(arguments))
                .await;
            if matches!(result, Ok(r) if r.is_error != Some(true)) {
                done += 1;
            }
        }
        done
    });
    let done: usize = futures::future::join_all(runs).await.into_iter().sum();
    let took = started.elapsed();
    for session in sessions {
        let _ = session.cancel().await;
    }
    Ok((done, took))
}

/// `bench.ping`: a built-in tool that answers its number, the cheapest call there is.
fn ping() -> BuiltinTool {
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct Ping {
        /// Any number.
        n: f64,
    }
    BuiltinTool::new(
        "ping",
        "Answers its number",
        |p: Ping| async move { Ok(p.n) },
    )
}

/// Per-call cost of a built-in tool from a program: (1000 calls - 0 calls) / 1000.
async fn builtin_call_cost(calls: usize) -> anyhow::Result<Duration> {
    let codemode = CodeMode::builder().tool("bench", ping()).build().await?;
    let with_calls = format!(
        "let s = 0;\nfor (let i = 0; i < {calls}; i++) s += await tools.bench.ping({{ n: i }});\nreturn s;"
    );
    let without = format!(
        "let s = 0;\nfor (let i = 0; i < {calls}; i++) s += await Promise.resolve(i);\nreturn s;"
    );
    let mut rounds = Vec::new();
    for round in 0..9 {
        let a = Instant::now();
        let run = codemode.execute(&with_calls).await;
        let a = a.elapsed();
        anyhow::ensure!(run.outcome.result.is_ok(), "{:?}", run.outcome.result);
        let b = Instant::now();
        codemode.execute(&without).await;
        let b = b.elapsed();
        if round >= 2 {
            rounds.push(a.saturating_sub(b) / calls as u32);
        }
    }
    Ok(median(rounds))
}

/// Per-call time of `echo` on server-everything: a direct rmcp client, the host's own call
/// path (`Upstream::call`, no isolate), and from a program. Both server processes are
/// warmed up first (Node compiles its hot paths as it goes), then the three are measured in
/// alternating rounds and the median round of each is kept, so drift on the machine falls
/// on all three alike.
async fn upstream_call_cost(
    npm_bin: &std::path::Path,
    calls: usize,
) -> anyhow::Result<(Duration, Duration, Duration, Duration)> {
    let command = npm_bin.join("mcp-server-everything");
    let mut direct_command = tokio::process::Command::new(&command);
    direct_command.stderr(Stdio::null());
    let client = ().serve(TokioChildProcess::new(direct_command)?).await?;
    let config = Config::parse(
        &json!({ "mcpServers": { "everything": { "command": command } } }).to_string(),
        "bench",
    )?;
    let codemode = CodeMode::builder().config(config).build().await?;
    let upstream = codemode
        .executor()
        .tools()
        .upstreams()
        .get("everything")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the everything upstream did not connect"))?;
    // The same tools, with isolates that sleep at once while they wait (--spin-us 0).
    let sleeping = Executor::with_tools(
        ExecutorSettings {
            spin: Duration::ZERO,
            ..ExecutorSettings::default()
        },
        codemode.executor().tools().clone(),
    )?;
    let program = format!(
        "for (let i = 0; i < {calls}; i++) await tools.everything.echo({{ message: 'hi' }});\nreturn 1;"
    );
    let arguments = || {
        let serde_json::Value::Object(arguments) = json!({ "message": "hi" }) else {
            unreachable!()
        };
        arguments
    };
    let (mut direct, mut host, mut through, mut unspun) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..9 {
        let started = Instant::now();
        for _ in 0..calls {
            client
                .call_tool(CallToolRequestParams::new("echo").with_arguments(arguments()))
                .await?;
        }
        let d = started.elapsed() / calls as u32;
        let started = Instant::now();
        for _ in 0..calls {
            upstream.call("echo", arguments(), 0, None).await?;
        }
        let h = started.elapsed() / calls as u32;
        let started = Instant::now();
        let run = codemode.execute(&program).await;
        anyhow::ensure!(run.outcome.result.is_ok(), "{:?}", run.outcome.result);
        let t = started.elapsed() / calls as u32;
        let started = Instant::now();
        let run = sleeping.execute(&program, None).await;
        anyhow::ensure!(run.outcome.result.is_ok(), "{:?}", run.outcome.result);
        let u = started.elapsed() / calls as u32;
        // The first rounds warm both server processes up.
        if round >= 2 {
            direct.push(d);
            host.push(h);
            through.push(t);
            unspun.push(u);
        }
    }
    client.cancel().await?;
    Ok((
        median(direct),
        median(host),
        median(through),
        median(unspun),
    ))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Tokens a model reads to discover tools on a 220-tool catalog: every declaration in the
/// tool description, against the description as served plus one `search_tools` answer.
async fn discovery_cost() -> anyhow::Result<()> {
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Query {
        /// What to look for.
        query: String,
        /// Most results to return.
        limit: Option<u32>,
        /// Only items changed since this ISO date.
        since: Option<String>,
    }
    let verbs = [
        "list", "get", "create", "update", "delete", "search", "archive", "export", "import",
        "count",
    ];
    let things = [
        "issues",
        "users",
        "projects",
        "invoices",
        "tickets",
        "documents",
        "events",
        "orders",
        "repos",
        "pages",
        "alerts",
    ];
    let mut builder = CodeMode::builder();
    for thing in things {
        for verb in verbs {
            for variant in ["", "_batch"] {
                let name = format!("{verb}_{thing}{variant}");
                let description = format!(
                    "{verb} {thing}{}: filter by query, limit the count, and restrict to recent changes.",
                    if variant.is_empty() {
                        ""
                    } else {
                        " in batches"
                    }
                );
                builder = builder.tool(
                    thing,
                    BuiltinTool::new(name, description, |q: Query| async move { Ok(q.query) }),
                );
            }
        }
    }
    let codemode = builder.build().await?;
    let catalog = codemode.catalog();
    let tools = catalog.tools().count();
    let bpe = tiktoken_rs::o200k_base()?;
    let tokens = |text: &str| bpe.encode_ordinary(text).len();
    let all = tokens(&typegen::all_declarations(&catalog));
    let served = tokens(&execute_code_description(&catalog, None));
    let search = tokens(&search_answer(&catalog, "create invoices", Detail::Full, 5));
    println!("discovery on a {tools}-tool catalog (tokens, o200k_base):");
    println!("  every declaration in the tool description:                 {all:>7}");
    println!(
        "  description as served + one search_tools answer (5 tools): {:>7}  ({:.1}% of all declarations)",
        served + search,
        100.0 * (served + search) as f64 / all as f64
    );
    Ok(())
}

/// `calls` sequential `execute_code` calls of `return 1`, each timed.
async fn round_trips(client: &Peer<RoleClient>, calls: usize) -> anyhow::Result<Vec<Duration>> {
    let serde_json::Value::Object(arguments) = serde_json::json!({ "code": "return 1" }) else {
        unreachable!()
    };
    let mut trips = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let result = client
            .call_tool(CallToolRequestParams::new("execute_code").with_arguments(arguments.clone()))
            .await?;
        trips.push(started.elapsed());
        assert_ne!(result.is_error, Some(true));
    }
    Ok(trips)
}

/// Reads `serve --http`'s log until it says where it listens; keeps draining it after.
fn listening_address(stderr: std::process::ChildStderr) -> anyhow::Result<String> {
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        if let Some(rest) = line?.split("listening on http://").nth(1) {
            let addr = rest.split(':').take(2).collect::<Vec<_>>().join(":");
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(addr);
        }
    }
    anyhow::bail!("serve --http exited before listening")
}
