//! The foundation benchmark: prints figures and ratios against baselines measured in the
//! same run. `cargo bench --bench foundation [-- --quick]`
//!
//! - isolate create-to-ready with the glue, and a bare QuickJS runtime + context (no glue);
//! - a trivial `execute_code` round trip through the real binary, over stdio and over
//!   streamable HTTP;
//! - RSS after 100 and after 10,000 executions (flat means no leak);
//! - baseline: spawning `node -e 0` as a fresh process.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use codemode_mcp::{
    executor::{Executor, ExecutorSettings},
    sandbox::{CancelHandle, Engine, Limits, NoTools, RunRequest},
    transpile::{line_count, transpile},
};
use rmcp::{
    Peer, RoleClient, ServiceExt,
    model::CallToolRequestParams,
    transport::{StreamableHttpClientTransport, TokioChildProcess},
};

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "codemode-mcp benchmark ({} mode)",
        if quick { "quick" } else { "full" }
    );
    println!("machine: {} cores, {}", cores(), cpu_model());
    println!();

    // 1. Isolates, measured on this thread.
    let engine = Engine::default();
    let code = "return 1";
    let request = RunRequest {
        js: transpile(code)?.js,
        program_lines: line_count(code),
        bindings: Vec::new(),
        fetch: false,
        limits: Limits::default(),
    };
    let cancel = CancelHandle::default();
    let n = 5_000 / scale;
    let mut ready = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let outcome = runtime.block_on(engine.run(&request, &cancel, std::sync::Arc::new(NoTools)));
        ready.push(started.elapsed());
        assert!(outcome.result.is_ok());
    }
    let mut bare = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        runtime.block_on(async {
            let rt = rquickjs::AsyncRuntime::new().expect("runtime");
            let ctx = rquickjs::AsyncContext::full(&rt).await.expect("context");
            ctx.with(|ctx| ctx.eval::<i32, _>("1").expect("eval")).await;
        });
        bare.push(started.elapsed());
    }
    let (ready_p50, ready_p99) = percentiles(&mut ready);
    let (bare_p50, bare_p99) = percentiles(&mut bare);
    println!("isolate, create + glue + run `return 1` + drop ({n} runs):");
    println!(
        "  p50 {}  p99 {}   (target p50 < 0.200 ms; Cloudflare quotes < 5 ms for V8 isolates)",
        ms(ready_p50),
        ms(ready_p99)
    );
    println!(
        "  bare QuickJS runtime + context + `1` + drop, no glue: p50 {}  p99 {}",
        ms(bare_p50),
        ms(bare_p99)
    );
    println!(
        "  glue and result handling cost: {:.2}x the bare isolate",
        ratio(ready_p50, bare_p50)
    );

    // 2. Baseline: a fresh Node.js process.
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
            println!("baseline, spawn `node -e 0`: p50 {}", ms(node_p50));
            println!(
                "  a fresh isolate is {:.0}x faster than a fresh node process",
                ratio(node_p50, ready_p50)
            );
        }
        None => println!("baseline, spawn `node -e 0`: node not found on PATH, skipped"),
    }
    println!();

    // 3. execute_code over stdio and over streamable HTTP, through the real binary.
    let binary = env!("CARGO_BIN_EXE_codemode-mcp");
    let calls = 2_000 / scale;
    let mut trips = runtime.block_on(async {
        let mut command = tokio::process::Command::new(binary);
        command
            .args(["serve", "--isolation", "none"])
            .env("CODEMODE_LOG", "warn");
        let client = ().serve(TokioChildProcess::new(command)?).await?;
        let trips = round_trips(&client, calls).await?;
        client.cancel().await?;
        anyhow::Ok(trips)
    })?;
    let (trip_p50, trip_p99) = percentiles(&mut trips);
    println!(
        "execute_code `return 1` round trip over stdio ({calls} calls, rmcp client, --isolation none):"
    );
    println!(
        "  p50 {}  p99 {}   (target p50 < 1 ms)",
        ms(trip_p50),
        ms(trip_p99)
    );
    println!(
        "  isolate share of the round trip: {:.0}%",
        100.0 * ratio(ready_p50, trip_p50)
    );

    let mut server = Command::new(binary)
        .args(["serve", "--isolation", "none", "--http", "127.0.0.1:0"])
        .env("CODEMODE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let addr = listening_address(server.stderr.take().expect("piped stderr"))?;
    let mut http_trips = runtime.block_on(async {
        let transport = StreamableHttpClientTransport::from_uri(format!("http://{addr}/mcp"));
        let client = ().serve(transport).await?;
        let trips = round_trips(&client, calls).await?;
        client.cancel().await?;
        anyhow::Ok(trips)
    })?;
    server.kill()?;
    server.wait()?;
    let (http_p50, http_p99) = percentiles(&mut http_trips);
    println!(
        "execute_code `return 1` round trip over streamable HTTP ({calls} calls, rmcp client, one session):"
    );
    println!(
        "  p50 {}  p99 {}   ({:.2}x stdio)",
        ms(http_p50),
        ms(http_p99),
        ratio(http_p50, trip_p50)
    );
    println!();

    // 4. Memory: RSS after 100 and after 10,000 executions through the executor.
    let executor = runtime.block_on(async { Executor::new(ExecutorSettings::default()) })?;
    let total = 10_000 / scale;
    let program = "const xs = Array.from({ length: 200 }, (_, i) => ({ i, s: 'v' + i }));\nconsole.log(xs.length);\nreturn xs.filter((x) => x.i % 2).length;";
    let (after_100, after_total) = runtime.block_on(async {
        let mut after_100 = 0;
        for i in 1..=total {
            let run = executor.execute(program, None).await;
            assert!(run.outcome.result.is_ok());
            if i == 100 {
                after_100 = rss_kib();
            }
        }
        (after_100, rss_kib())
    });
    println!("RSS after 100 executions: {after_100} KiB; after {total}: {after_total} KiB");
    println!(
        "  ratio {:.3} (flat = no leak; {:+} KiB over {} executions)",
        after_total as f64 / after_100 as f64,
        after_total as i64 - after_100 as i64,
        total - 100
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

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99))
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}
