//! The sandbox contract, run directly against every engine this binary was built with: the
//! shared suite each engine must pass (plain data in, plain data out).

use std::time::{Duration, Instant};

use clap::ValueEnum;
use codemode_mcp::{
    sandbox::{
        CancelHandle, Engine, EngineKind, ErrorKind, Limits, LogLevel, NoTools, RunOutcome,
        RunRequest,
    },
    transpile::{line_count, transpile},
};

fn engines() -> Vec<Engine> {
    EngineKind::value_variants()
        .iter()
        .map(|k| Engine::new(*k))
        .collect()
}

fn run_with(engine: &Engine, code: &str, limits: Limits, cancel: &CancelHandle) -> RunOutcome {
    let request = RunRequest {
        js: transpile(code).expect("test programs parse").js,
        program_lines: line_count(code),
        bindings: Vec::new(),
        fetch: false,
        limits,
    };
    // Isolates are not Send: each run gets a current-thread runtime, as the executor does.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(engine.run(&request, cancel, std::sync::Arc::new(NoTools)))
}

fn run(engine: &Engine, code: &str) -> RunOutcome {
    run_with(engine, code, Limits::default(), &CancelHandle::default())
}

fn kind(outcome: &RunOutcome) -> Option<ErrorKind> {
    outcome.result.as_ref().err().map(|e| e.kind)
}

#[test]
fn values_logs_and_async_work_on_every_engine() {
    for engine in engines() {
        let outcome = run(
            &engine,
            "console.warn('w');\nawait new Promise((r) => setTimeout(r, 1));\nreturn { ok: true, n: [1, 2] };",
        );
        assert_eq!(
            outcome.result.unwrap().json,
            r#"{"ok":true,"n":[1,2]}"#,
            "{:?}",
            engine.kind()
        );
        assert_eq!(outcome.logs.len(), 1);
        assert_eq!(outcome.logs[0].level, LogLevel::Warn);
    }
}

#[test]
fn limits_are_named_by_kind_on_every_engine() {
    for engine in engines() {
        let short = Limits {
            timeout: Duration::from_millis(150),
            ..Limits::default()
        };
        let started = Instant::now();
        let outcome = run_with(&engine, "while (true) {}", short, &CancelHandle::default());
        assert_eq!(kind(&outcome), Some(ErrorKind::Timeout));
        assert!(started.elapsed() < Duration::from_millis(250));

        let small = Limits {
            heap_bytes: 8 << 20,
            ..Limits::default()
        };
        let outcome = run_with(
            &engine,
            "const a = []; for (;;) { try { a.push(new Array(1e4).fill(1)); } catch {} }",
            small,
            &CancelHandle::default(),
        );
        assert_eq!(kind(&outcome), Some(ErrorKind::Memory));
        assert!(
            outcome.heap_peak_bytes <= 8 << 20,
            "{}",
            outcome.heap_peak_bytes
        );

        assert_eq!(
            kind(&run(&engine, "return () => 1;")),
            Some(ErrorKind::Output)
        );
        assert_eq!(
            kind(&run(&engine, "throw new Error('x');")),
            Some(ErrorKind::Runtime)
        );
    }
}

#[test]
fn cancellation_stops_a_running_isolate_on_every_engine() {
    for engine in engines() {
        let cancel = CancelHandle::default();
        let trigger = cancel.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            trigger.cancel();
        });
        let started = Instant::now();
        let outcome = run_with(&engine, "for (;;) {}", Limits::default(), &cancel);
        stopper.join().unwrap();
        assert_eq!(kind(&outcome), Some(ErrorKind::Cancelled));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

#[test]
fn engine_syntax_errors_are_positioned() {
    for engine in engines() {
        // Valid for the TypeScript parser, rejected by the engine: a duplicate `let`.
        let outcome = run(&engine, "let a = 1;\nlet a = 2;\nreturn a;");
        let error = outcome.result.unwrap_err();
        assert!(matches!(error.kind, ErrorKind::Syntax), "{error:?}");
        assert_eq!(error.position.map(|p| p.line), Some(2), "{error:?}");
    }
}
