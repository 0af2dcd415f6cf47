//! The sandbox contract, run directly against every engine this binary was built with: the
//! shared suite each engine must pass (plain data in, plain data out).

use std::time::{Duration, Instant};

use clap::ValueEnum;
use std::sync::{Arc, Mutex};

use codemode_mcp::{
    sandbox::{
        Binding, CancelHandle, Engine, EngineKind, ErrorKind, Limits, LogLevel, NoTools,
        ReplyFuture, RunOutcome, RunRequest, ToolCall, ToolFailure, ToolHost, ToolReply,
    },
    transpile::{line_count, transpile},
};

/// Every engine of this build, each warmed up by one program: the first isolate of a
/// process pays for compiling the glue (or making the snapshot), which timing assertions
/// must not count.
fn engines() -> Vec<Engine> {
    EngineKind::value_variants()
        .iter()
        .map(|k| {
            let engine = Engine::new(*k);
            assert!(run(&engine, "return 1;").result.is_ok());
            engine
        })
        .collect()
}

/// `code` as the engine receives it, with these bindings, `fetch` and limits.
fn request(code: &str, bindings: Vec<Binding>, fetch: bool, limits: Limits) -> RunRequest {
    RunRequest {
        js: transpile(code).expect("test programs parse").js,
        program_lines: line_count(code),
        bindings,
        fetch,
        limits,
    }
}

/// Runs `request` in a fresh isolate of `engine`.
fn block_on_run(
    engine: &Engine,
    request: &RunRequest,
    cancel: &CancelHandle,
    host: Arc<dyn ToolHost>,
) -> RunOutcome {
    // Isolates are not Send: each run gets a current-thread runtime, as the executor does.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(engine.run(request, cancel, host))
}

fn run_with(engine: &Engine, code: &str, limits: Limits, cancel: &CancelHandle) -> RunOutcome {
    let request = request(code, Vec::new(), false, limits);
    block_on_run(engine, &request, cancel, Arc::new(NoTools))
}

/// A host with `tools.math.add({a, b})`, `tools.math.check(args)` (always invalid, at
/// `/a`) and `tools.math.slow({})` (answers after 50 ms); it records every call, and
/// answers `fetch` with the request it got.
#[derive(Default)]
struct MathHost {
    calls: Mutex<Vec<ToolCall>>,
}

impl ToolHost for MathHost {
    fn call_tool(&self, call: ToolCall) -> ReplyFuture {
        self.calls.lock().unwrap().push(call.clone());
        Box::pin(async move {
            // A call the glue refused itself, reported so that the host records it.
            if let Some(message) = call.arguments.strip_prefix('\u{0}') {
                return ToolReply::Err(ToolFailure {
                    message: message.to_string(),
                    schema_path: None,
                });
            }
            let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
            match call.tool.as_str() {
                "add" => ToolReply::Ok(
                    serde_json::json!({ "sum": args["a"].as_f64().unwrap_or(0.0) + args["b"].as_f64().unwrap_or(0.0) })
                        .to_string(),
                ),
                "slow" => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    ToolReply::Ok("\"done\"".into())
                }
                _ => ToolReply::Err(ToolFailure {
                    message: "tools.math.check: a must be a number".into(),
                    schema_path: Some("/a".into()),
                }),
            }
        })
    }

    fn fetch(&self, request: String) -> ReplyFuture {
        Box::pin(async move {
            let request: serde_json::Value = serde_json::from_str(&request).unwrap();
            ToolReply::Ok(
                serde_json::json!({
                    "status": 200, "statusText": "OK", "url": request["url"],
                    "headers": [["content-type", "text/plain"]],
                    "body": base64_of(request["url"].as_str().unwrap_or_default()),
                    "bodyBase64": true,
                    "redirected": false,
                })
                .to_string(),
            )
        })
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn run_on(engine: &Engine, code: &str, host: Arc<MathHost>, fetch: bool) -> RunOutcome {
    let bindings = vec![Binding {
        namespace: "math".into(),
        tools: vec!["add".into(), "check".into(), "slow".into()],
        global: false,
        aliases: Vec::new(),
        unavailable: None,
    }];
    let request = request(code, bindings, fetch, Limits::default());
    block_on_run(engine, &request, &CancelHandle::default(), host)
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
        // Generous: a loaded machine may be slow to wake the watchdog; never a tight window.
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");

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
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
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

#[test]
fn tool_calls_cross_as_json_with_their_site_on_every_engine() {
    for engine in engines() {
        let host = Arc::new(MathHost::default());
        let outcome = run_on(
            &engine,
            "const a = await tools.math.add({ a: 1, b: 2 });\nconst [b, c] = await Promise.all([tools.math.slow({}), tools.math.add({ a: a.sum, b: 10 })]);\nreturn [a.sum, b, c.sum];",
            host.clone(),
            false,
        );
        assert_eq!(
            outcome.result.unwrap().json,
            "[3,\"done\",13]",
            "{:?}",
            engine.kind()
        );
        let calls = host.calls.lock().unwrap();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0].arguments, r#"{"a":1,"b":2}"#);
        let site = calls[0].site.unwrap();
        assert_eq!(
            (site.line, site.column > 0),
            (1, true),
            "{:?}",
            engine.kind()
        );
        assert_eq!(calls[2].site.map(|s| s.line), Some(2));
    }
}

#[test]
fn tool_errors_carry_the_tool_and_schema_path_on_every_engine() {
    for engine in engines() {
        let host = Arc::new(MathHost::default());
        let outcome = run_on(
            &engine,
            "const x = 1;\nawait tools.math.check({ a: 'no' });",
            host.clone(),
            false,
        );
        let error = outcome.result.unwrap_err();
        assert_eq!(
            error.kind,
            ErrorKind::Tool,
            "{:?}: {error:?}",
            engine.kind()
        );
        assert_eq!(error.tool.as_deref(), Some("math.check"));
        assert_eq!(error.schema_path.as_deref(), Some("/a"));
        assert_eq!(error.position.map(|p| p.line), Some(2), "{error:?}");

        // Caught, it is an ordinary value; a look-alike thrown by the program is not a ToolError.
        let outcome = run_on(
            &engine,
            "try { await tools.math.check({}); } catch (e) { return [e instanceof ToolError, e.tool, e.schemaPath]; }",
            host.clone(),
            false,
        );
        assert_eq!(outcome.result.unwrap().json, r#"[true,"math.check","/a"]"#);
        let outcome = run_on(
            &engine,
            "const e = new Error('forged'); e.name = 'ToolError'; e.tool = 'math.add'; throw e;",
            host.clone(),
            false,
        );
        assert_eq!(
            kind(&outcome),
            Some(ErrorKind::Runtime),
            "{:?}",
            engine.kind()
        );

        let outcome = run_on(&engine, "return tools.math.nope({});", host, false);
        let error = outcome.result.unwrap_err();
        assert!(
            error.message.contains("math has: add, check, slow"),
            "{error:?}"
        );
    }
}

#[test]
fn fetch_exists_only_when_the_run_has_it_on_every_engine() {
    for engine in engines() {
        let host = Arc::new(MathHost::default());
        let outcome = run_on(&engine, "return typeof fetch;", host.clone(), false);
        assert_eq!(outcome.result.unwrap().json, r#""undefined""#);
        let outcome = run_on(
            &engine,
            "const r = await fetch('https://example.com/x');\nreturn [r.status, await r.text()];",
            host,
            true,
        );
        assert_eq!(
            outcome.result.unwrap().json,
            r#"[200,"https://example.com/x"]"#,
            "{:?}",
            engine.kind()
        );
    }
}

#[test]
fn the_program_reaches_nothing_of_the_engine_on_every_engine() {
    for engine in engines() {
        let outcome = run(
            &engine,
            "return [typeof Deno, typeof __bootstrap, typeof __infra, typeof require, typeof process, typeof __codemodeInstall, typeof console.log, typeof setTimeout, typeof tools];",
        );
        assert_eq!(
            outcome.result.unwrap().json,
            r#"["undefined","undefined","undefined","undefined","undefined","undefined","function","function","object"]"#,
            "{:?}",
            engine.kind()
        );
        let outcome = run(
            &engine,
            "return Object.getOwnPropertyNames(globalThis).filter((k) => /deno|core|ops|bootstrap/i.test(k));",
        );
        assert_eq!(outcome.result.unwrap().json, "[]", "{:?}", engine.kind());
        let outcome = run(&engine, "return missingThing + 1;");
        let error = outcome.result.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Runtime);
        assert!(
            error.message.contains("is not defined. Besides"),
            "{error:?}"
        );
        assert_eq!(
            error.position.map(|p| p.line),
            Some(1),
            "{:?}: {error:?}",
            engine.kind()
        );
    }
}

#[test]
fn errors_and_logs_are_in_the_agents_lines_on_every_engine() {
    for engine in engines() {
        let outcome = run(
            &engine,
            "function inner() {\n  throw new TypeError('bad input');\n}\nconsole.log('a', { b: [1] }, 2n);\ninner();",
        );
        assert_eq!(
            outcome.logs[0].message,
            "a { b: [1] } 2n",
            "{:?}",
            engine.kind()
        );
        let error = outcome.result.unwrap_err();
        assert_eq!(error.message, "TypeError: bad input");
        assert_eq!(
            error.position.map(|p| p.line),
            Some(2),
            "{:?}: {error:?}",
            engine.kind()
        );
        assert!(
            error.stack.unwrap().contains("program.ts:5:"),
            "{:?}",
            engine.kind()
        );

        let outcome = run(&engine, "throw 42;");
        let error = outcome.result.unwrap_err();
        assert!(error.message.contains("non-Error value: 42"), "{error:?}");

        // A rejection nobody awaits does not end the program.
        let outcome = run(&engine, "Promise.reject(new Error('ignored'));\nreturn 1;");
        assert_eq!(outcome.result.unwrap().json, "1", "{:?}", engine.kind());
    }
}

#[test]
fn output_and_result_caps_cut_on_every_engine() {
    for engine in engines() {
        let limits = Limits {
            output_bytes: 100,
            result_bytes: 50,
            ..Limits::default()
        };
        let outcome = run_with(
            &engine,
            "for (let i = 0; i < 50; i++) console.log('line ' + i);\nreturn 'x'.repeat(80);",
            limits,
            &CancelHandle::default(),
        );
        assert!(outcome.logs_truncated.is_some(), "{:?}", engine.kind());
        let total: usize = outcome.logs.iter().map(|l| l.message.len()).sum();
        assert!(total <= 100);
        let value = outcome.result.unwrap();
        assert_eq!(value.truncated.unwrap().total_bytes, 82);
        assert_eq!(value.json.len(), 50);
    }
}

#[test]
fn memory_is_named_even_when_the_program_catches_it_on_every_engine() {
    for engine in engines() {
        let small = Limits {
            heap_bytes: 16 << 20,
            ..Limits::default()
        };
        let outcome = run_with(
            &engine,
            "let caught = 0;\nconst keep = [];\nfor (let i = 0; i < 1e6; i++) { try { keep.push('x'.repeat(1e5) + i); } catch (e) { caught++; keep.length = 0; } }\nreturn caught;",
            small,
            &CancelHandle::default(),
        );
        assert_eq!(
            kind(&outcome),
            Some(ErrorKind::Memory),
            "{:?}: {:?}",
            engine.kind(),
            outcome.result
        );

        // Deep recursion is a catchable RangeError, not a crash.
        let outcome = run(
            &engine,
            "function f(n) { return f(n + 1) + 1; }\ntry { f(0); } catch (e) { return e instanceof RangeError; }",
        );
        assert_eq!(outcome.result.unwrap().json, "true", "{:?}", engine.kind());
    }
}

#[test]
fn a_timeout_stops_a_program_waiting_on_the_host_on_every_engine() {
    for engine in engines() {
        let short = Limits {
            timeout: Duration::from_millis(150),
            ..Limits::default()
        };
        let started = Instant::now();
        let outcome = run_with(
            &engine,
            "await new Promise((r) => setTimeout(r, 60000));",
            short,
            &CancelHandle::default(),
        );
        assert_eq!(
            kind(&outcome),
            Some(ErrorKind::Timeout),
            "{:?}",
            engine.kind()
        );
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }
}

#[test]
fn isolates_share_nothing_on_every_engine() {
    for engine in engines() {
        let first = run(
            &engine,
            "globalThis.leak = 41; Object.prototype.polluted = 1; return 1;",
        );
        assert!(first.result.is_ok());
        let second = run(
            &engine,
            "return [typeof leak, ({}).polluted === undefined];",
        );
        assert_eq!(
            second.result.unwrap().json,
            r#"["undefined",true]"#,
            "{:?}",
            engine.kind()
        );
    }
}

/// The warm path: an isolate made ahead for a program's shape runs it; one made for
/// another shape is not used for it.
#[test]
fn warm_isolates_run_the_program_they_were_made_for_on_every_engine() {
    for engine in engines() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let bindings = vec![Binding {
            namespace: "math".into(),
            tools: vec!["add".into()],
            global: false,
            aliases: Vec::new(),
            unavailable: None,
        }];
        let request = request(
            "return typeof tools.math.add;",
            bindings,
            false,
            Limits::default(),
        );
        let warm = runtime.block_on(engine.prepare(&request));
        assert!(warm.is_some(), "{:?}", engine.kind());
        let outcome = runtime.block_on(engine.run_in(
            warm,
            &request,
            &CancelHandle::default(),
            Arc::new(NoTools),
        ));
        assert_eq!(outcome.result.unwrap().json, r#""function""#);

        let other = RunRequest {
            bindings: Vec::new(),
            ..request.clone()
        };
        let warm = runtime.block_on(engine.prepare(&request));
        let outcome = runtime.block_on(engine.run_in(
            warm,
            &other,
            &CancelHandle::default(),
            Arc::new(NoTools),
        ));
        let error = outcome.result.unwrap_err();
        assert!(
            error.message.contains("tools.math does not exist"),
            "{:?}: {error:?}",
            engine.kind()
        );
    }
}
