//! The engines benchmark: each JS engine this build has, measured the same way.
//! `scripts/bench-engines [--quick]` runs it for both builds (the default engine, and
//! deno_core on its QuickJS-ng backend, which cannot share a binary with it) and prints
//! them side by side with ratios; by hand:
//! `cargo bench --bench engines -- --json FILE` writes this build's figures, and
//! `cargo bench --bench engines -- --baseline FILE` prints them beside FILE's.
//!
//! Figures, per engine, in-process (`--isolation none`):
//! - create-to-ready: an isolate made with the glue installed, p50;
//! - a trivial execution (`return 1`) in a fresh isolate, end to end, p50;
//! - a numeric loop (2e7 iterations) and a JSON transform of ~10 MB (parse, map,
//!   stringify), each in a fresh isolate;
//! - RSS per live isolate (50 held at once), and RSS growth per isolate made and dropped
//!   (the quickjs backend's leak).

mod common;

use common::{cores, cpu_model, percentiles, rss_kib};

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::ValueEnum;
use codemode_mcp::{
    sandbox::{CancelHandle, Engine, EngineKind, Limits, NoTools, RunRequest},
    transpile::{line_count, transpile},
};

const NUMERIC: &str =
    "let s = 0;\nfor (let i = 0; i < 2e7; i++) s = (s + i * i) % 1000003;\nreturn s;";
const JSON_10MB: &str = "const rows = [];\nfor (let i = 0; i < 100000; i++) rows.push({ id: i, name: 'row ' + i, tags: ['a', 'b', String(i % 7)], score: i / 3, nested: { ok: i % 2 === 0, text: 'x'.repeat(20) } });\nconst text = JSON.stringify(rows);\nconst back = JSON.parse(text).map((r) => ({ id: r.id, score: Math.round(r.score), ok: r.nested.ok }));\nreturn { mb: Math.round(text.length / 1e5) / 10, out: JSON.stringify(back).length };";

fn request(code: &str, limits: Limits) -> RunRequest {
    RunRequest {
        js: transpile(code).expect("benchmark programs parse").js,
        program_lines: line_count(code),
        bindings: Vec::new(),
        fetch: false,
        limits,
    }
}

/// One figure, in the unit its name ends with.
type Figures = BTreeMap<String, f64>;

fn measure(engine: Engine, scale: usize, runtime: &tokio::runtime::Runtime) -> Figures {
    let limits = Limits {
        heap_bytes: 512 << 20,
        timeout: Duration::from_secs(120),
        ..Limits::default()
    };
    let trivial = request("return 1;", limits);
    let mut figures = Figures::new();
    let run = |req: &RunRequest| {
        runtime.block_on(engine.run(req, &CancelHandle::default(), Arc::new(NoTools)))
    };
    // Warm-up: glue compiled or snapshot made, pages faulted in.
    for _ in 0..5 {
        assert!(run(&trivial).result.is_ok());
    }

    let mut ready = Vec::new();
    for _ in 0..(200 / scale).max(10) {
        let started = Instant::now();
        let warm = runtime.block_on(engine.prepare(&trivial));
        ready.push(started.elapsed());
        assert!(warm.is_some());
        drop(warm);
    }
    figures.insert("create-to-ready p50 ms".into(), p50_ms(&mut ready));

    let mut trivial_runs = Vec::new();
    for _ in 0..(200 / scale).max(10) {
        let started = Instant::now();
        assert!(run(&trivial).result.is_ok());
        trivial_runs.push(started.elapsed());
    }
    figures.insert("trivial execution p50 ms".into(), p50_ms(&mut trivial_runs));

    for (name, code) in [
        ("numeric loop", NUMERIC),
        ("JSON transform 10 MB", JSON_10MB),
    ] {
        let program = request(code, limits);
        let mut runs = Vec::new();
        for _ in 0..(3usize).div_ceil(scale).max(1) {
            let started = Instant::now();
            let outcome = run(&program);
            runs.push(started.elapsed());
            assert!(outcome.result.is_ok(), "{name}: {:?}", outcome.result);
        }
        figures.insert(format!("{name} p50 ms"), p50_ms(&mut runs));
    }

    let held = 50;
    let before = rss_kib();
    let warm: Vec<_> = (0..held)
        .map(|_| runtime.block_on(engine.prepare(&trivial)))
        .collect();
    let during = rss_kib();
    drop(warm);
    figures.insert(
        "RSS per live isolate KiB".into(),
        during.saturating_sub(before) as f64 / held as f64,
    );

    let cycles = (500 / scale).max(50);
    let before = rss_kib();
    for _ in 0..cycles {
        assert!(run(&trivial).result.is_ok());
    }
    figures.insert(
        "RSS growth per isolate made and dropped KiB".into(),
        rss_kib().saturating_sub(before) as f64 / cycles as f64,
    );
    figures
}

fn p50_ms(samples: &mut [Duration]) -> f64 {
    percentiles(samples).0.as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let scale = if quick { 10 } else { 1 };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let mut all: BTreeMap<String, Figures> = BTreeMap::new();
    for kind in EngineKind::value_variants() {
        all.insert(
            kind.as_str().to_string(),
            measure(Engine::new(*kind), scale, &runtime),
        );
    }
    if let Some(path) = after("--json") {
        std::fs::write(&path, serde_json::to_string_pretty(&all)?)?;
    }
    if let Some(path) = after("--baseline") {
        let baseline: BTreeMap<String, Figures> =
            serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        for (name, figures) in baseline {
            all.entry(name).or_insert(figures);
        }
    }

    println!(
        "engines benchmark: {} ({} cores), release build, in-process isolates{}",
        cpu_model(),
        cores(),
        if quick { ", --quick" } else { "" }
    );
    let names: Vec<&String> = all.keys().collect();
    let baseline = all.get("quickjs");
    print!("{:<46}", "");
    for name in &names {
        print!("{name:>14}");
    }
    if baseline.is_some() && names.len() > 1 {
        print!("{:>24}", "ratio to quickjs");
    }
    println!();
    let rows: Vec<String> = all
        .values()
        .next()
        .map_or(Vec::new(), |f| f.keys().cloned().collect());
    for row in rows {
        print!("{row:<46}");
        for name in &names {
            print!(
                "{:>14.3}",
                all[*name].get(&row).copied().unwrap_or(f64::NAN)
            );
        }
        if let Some(base) = baseline.and_then(|b| b.get(&row))
            && names.len() > 1
        {
            let others: Vec<String> = names
                .iter()
                .filter(|n| n.as_str() != "quickjs")
                .map(|n| {
                    let value = all[*n].get(&row).copied().unwrap_or(f64::NAN);
                    if *base > 0.0 {
                        format!("{n} {:.2}x", value / base)
                    } else {
                        format!("{n} -")
                    }
                })
                .collect();
            print!("{:>24}", others.join(", "));
        }
        println!();
    }
    Ok(())
}
