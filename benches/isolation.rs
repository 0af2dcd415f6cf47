//! The isolation benchmark: what running programs in locked-down worker processes costs,
//! against running them in-process, measured in the same run.
//! `cargo bench --bench isolation [-- --quick]`
//!
//! - a trivial execution through the executor, `--isolation none` vs `process`, with the
//!   pool warm (a pause between runs lets it refill);
//! - one host call round trip (a program making many tool calls to an echo host);
//! - a replacement worker, spawn to ready;
//! - executions per second at full load, both modes (and with `--worker-reuse 16`).

mod common;

use common::{cores, cpu_model, ms, percentiles};

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use codemode_mcp::{
    catalog::LiveCatalog,
    executor::{Executor, ExecutorSettings},
    isolation::{PoolSettings, WorkerPool},
    sandbox::{
        Binding, CancelHandle, Engine, EngineKind, Limits, ReplyFuture, RunRequest, ToolCall,
        ToolHost, ToolReply,
    },
    transpile::{line_count, transpile},
};

const WORKER_BINARY: &str = env!("CARGO_BIN_EXE_codemode-mcp");

fn pool_settings(size: usize) -> PoolSettings {
    PoolSettings {
        program: WORKER_BINARY.into(),
        engine: EngineKind::default(),
        limits: Limits::default(),
        size,
        reuse: 1,
        warm: true,
        spin: codemode_mcp::sandbox::SPIN,
        time_zone: "UTC".into(),
    }
}

/// Answers every call with its own arguments.
struct Echo;

impl ToolHost for Echo {
    fn call_tool(&self, call: ToolCall) -> ReplyFuture {
        Box::pin(std::future::ready(ToolReply::Ok(call.arguments)))
    }
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "codemode-mcp isolation benchmark ({} mode)",
        if quick { "quick" } else { "full" }
    );
    println!("machine: {} cores, {}", cores(), cpu_model());
    println!();

    runtime.block_on(async {
        let settings = ExecutorSettings::default();
        let in_process = Executor::new(settings)?;
        let (pool, _) = WorkerPool::start(pool_settings(settings.concurrency)).await?;
        let in_workers =
            Executor::with_workers(settings, Arc::new(LiveCatalog::empty()), pool.clone());
        // Let the pool fill.
        tokio::time::sleep(Duration::from_millis(500)).await;

        // 1. A trivial execution with the pool warm.
        let runs = 500 / scale;
        let mut none = Vec::with_capacity(runs);
        let mut process = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let run = in_process.execute("return 1", None).await;
            none.push(started.elapsed());
            assert!(run.outcome.result.is_ok());
            let started = Instant::now();
            let run = in_workers.execute("return 1", None).await;
            process.push(started.elapsed());
            assert!(run.outcome.result.is_ok(), "{:?}", run.outcome.result);
            // The pool replaces the worker just used.
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        let (none_p50, none_p99) = percentiles(&mut none);
        let (process_p50, process_p99) = percentiles(&mut process);
        println!("trivial execution `return 1` through the executor ({runs} runs each, pool warm):");
        println!("  --isolation none:    p50 {}  p99 {}", ms(none_p50), ms(none_p99));
        println!(
            "  --isolation process: p50 {}  p99 {}   (+{} p50; target: at most +1 ms)",
            ms(process_p50),
            ms(process_p99),
            ms(process_p50.saturating_sub(none_p50))
        );
        println!();

        // 2. Host calls: a program making `calls` tool calls, in-process vs in a worker.
        let calls = 2_000 / scale;
        let code = format!(
            "let n = 0;\nfor (let i = 0; i < {calls}; i++) {{ n += (await tools.bench.echo({{ i }})).i; }}\nreturn n;"
        );
        let request = RunRequest {
            js: transpile(&code)?.js,
            program_lines: line_count(&code),
            bindings: vec![Binding {
                namespace: "bench".into(),
                tools: vec!["echo".into()],
                global: false,
                aliases: Vec::new(),
                unavailable: None,
            }],
            fetch: false,
            limits: Limits::default(),
        };
        let engine = Engine::new(EngineKind::default());
        let host: Arc<dyn ToolHost> = Arc::new(Echo);
        let mut in_process_calls = Vec::new();
        let mut worker_calls = Vec::new();
        for _ in 0..5 {
            let here_request = request.clone();
            let host_here = host.clone();
            let started = Instant::now();
            let outcome = tokio::task::spawn_blocking(move || {
                let local = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                local.block_on(engine.run(&here_request, &CancelHandle::default(), host_here))
            })
            .await?;
            in_process_calls.push(started.elapsed());
            assert!(outcome.result.is_ok(), "{:?}", outcome.result);
            let started = Instant::now();
            let outcome = pool.run(&request, &CancelHandle::default(), host.clone()).await;
            worker_calls.push(started.elapsed());
            assert!(outcome.result.is_ok(), "{:?}", outcome.result);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (here, _) = percentiles(&mut in_process_calls);
        let (there, _) = percentiles(&mut worker_calls);
        println!("one host call round trip ({calls} sequential tool calls to an echo host, median of 5):");
        println!(
            "  in-process: {:.1} us per call; in a worker: {:.1} us per call (+{:.1} us; target < 100 us)",
            per_call(here, calls),
            per_call(there, calls),
            per_call(there, calls) - per_call(here, calls)
        );
        println!();

        // 3. A replacement worker: spawn, lockdown, warm-up, ready.
        let spawns = 40 / scale.min(4);
        let mut ready = Vec::with_capacity(spawns);
        for _ in 0..spawns {
            let started = Instant::now();
            let (one, _) = WorkerPool::start(pool_settings(0)).await?;
            ready.push(started.elapsed());
            drop(one);
        }
        let (ready_p50, ready_p99) = percentiles(&mut ready);
        println!("replacement worker, spawn to ready ({spawns} workers, one at a time):");
        println!(
            "  p50 {}  p99 {}   (target p99 < 50 ms)",
            ms(ready_p50),
            ms(ready_p99)
        );
        println!();

        // 4. Full load: 2 x concurrency clients back to back for a fixed time.
        let window = Duration::from_millis(if quick { 500 } else { 3000 });
        let clients = 2 * settings.concurrency;
        let none_rate = throughput(&in_process, clients, window).await;
        let process_rate = throughput(&in_workers, clients, window).await;
        let (reusing, _) = WorkerPool::start(PoolSettings {
            reuse: 16,
            ..pool_settings(settings.concurrency)
        })
        .await?;
        let reused = Executor::with_workers(settings, Arc::new(LiveCatalog::empty()), reusing);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reuse_rate = throughput(&reused, clients, window).await;
        println!(
            "executions per second at full load ({clients} clients, {} concurrent, `return 1`):",
            settings.concurrency
        );
        println!("  --isolation none:    {none_rate:.0}/s");
        println!(
            "  --isolation process: {process_rate:.0}/s   ({:.2}x in-process; bound by worker start-up)",
            process_rate / none_rate
        );
        println!(
            "  --isolation process --worker-reuse 16: {reuse_rate:.0}/s   ({:.2}x in-process)",
            reuse_rate / none_rate
        );
        anyhow::Ok(())
    })
}

async fn throughput(executor: &Executor, clients: usize, window: Duration) -> f64 {
    let done = AtomicUsize::new(0);
    let deadline = Instant::now() + window;
    let started = Instant::now();
    let workers = (0..clients).map(|_| async {
        while Instant::now() < deadline {
            let run = executor.execute("return 1", None).await;
            if run.outcome.result.is_ok() {
                done.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    futures::future::join_all(workers).await;
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn per_call(total: Duration, calls: usize) -> f64 {
    total.as_secs_f64() * 1e6 / calls as f64
}
