//! The hostile-program suite: each file in `tests/hostile/` is a program whose header
//! says how it must end (`// expect: ok` or an error kind, or several joined by `|` where
//! the engine may legitimately end either way; optionally `// result: <JSON>` and
//! `// tool: NAME`, the tool a `tool` error must name, and `// timeoutMs: N`, default 1000 for a case that may end `timeout`, else 30,000, so that
//! the clock cannot stop first a case that must end otherwise, however slow the machine;
//! `// deno: <kinds>` replaces `expect` on the deno engine, each such case listed in README
//! with the reason). Run through the real server (worker processes, a policy that denies
//! `toy.fail`, `fetch` allowed to a local web server with a secret header, the audit log
//! on): every case must end as expected, within its time limit plus [`SLACK_MS`] (room for
//! a loaded 2-core machine: the bound proves a limit holds, not how fast it fires), the
//! server must keep serving after each, and at the end no worker is left a zombie and the
//! audit chain verifies. `${WEB}` in a program is the web server's
//! `http://127.0.0.1:PORT`, `${NAMED}` the same through `localhost`.

use crate::common;

use std::path::PathBuf;

use common::{BIN, Server, children, toy, web};
use serde_json::{Value, json};

/// How far past its time limit a case may end: a worker killed at its deadline on a
/// machine whose cores are both busy still answers well inside it.
const SLACK_MS: u64 = 5_000;

/// The time limit of a case that cannot end `timeout`: long enough that the limit it must
/// meet (the heap cap, a budget) or its answer comes first on any machine, so the outcome
/// never depends on how fast its work goes.
const UNTIMED_CASE_TIMEOUT_MS: u64 = 30_000;

/// The largest answer any case may get.
const MAX_ANSWER_BYTES: usize = 8 << 20;

struct Case {
    name: String,
    code: String,
    expect: String,
    result: Option<Value>,
    tool: Option<String>,
    timeout_ms: u64,
}

fn cases() -> Vec<Case> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "js"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let code = std::fs::read_to_string(&path).unwrap();
            let header = |key: &str| {
                code.lines()
                    .take_while(|l| l.starts_with("//"))
                    .find_map(|l| l.strip_prefix(&format!("// {key}: ")))
                    .map(str::to_string)
            };
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            // The binary's engine is deno only in a build without the default one.
            let engine_expect = if cfg!(feature = "quickjs") {
                None
            } else {
                header("deno")
            };
            let expect = engine_expect
                .or_else(|| header("expect"))
                .unwrap_or_else(|| panic!("{name}: no `// expect:`"));
            let kinds: Vec<&str> = expect.split('|').map(str::trim).collect();
            let default_timeout = if kinds.contains(&"timeout") {
                1000
            } else {
                UNTIMED_CASE_TIMEOUT_MS
            };
            Case {
                result: header("result").map(|r| serde_json::from_str(&r).unwrap()),
                tool: header("tool"),
                timeout_ms: header("timeoutMs").map_or(default_timeout, |t| t.parse().unwrap()),
                expect,
                name,
                code,
            }
        })
        .collect()
}

/// The secret the egress rule adds; no program may ever see it.
const SECRET: &str = "hostile-secret-value";

/// Starts the server the suite runs against, with the web server `web` allowed and
/// `limits` as its `codemode.limits`.
async fn hostile_server(
    dir: &std::path::Path,
    web: &web::Web,
    log: &std::path::Path,
    limits: Value,
) -> Server {
    let config = common::write_config(
        dir,
        &json!({
            "mcpServers": { "toy": toy() },
            "codemode": {
                "limits": limits,
                "policy": { "rules": [{ "tools": "toy.fail", "action": "deny" }] },
                "egress": {
                    "rules": [
                        { "url": format!("{}/**", web.url("")), "allowPrivate": true,
                          "headers": { "Authorization": "Bearer ${HOSTILE_TOKEN}" } },
                        { "url": format!("{}/**", web.named("")) }
                    ],
                    "timeoutMs": 5000
                }
            }
        }),
    );
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(["serve", "--config", &config, "--audit-log"])
        .arg(log)
        .env("CODEMODE_LOG", "warn")
        .env("HOSTILE_TOKEN", SECRET);
    let transport = rmcp::transport::TokioChildProcess::new(command).unwrap();
    let pid = transport.id().unwrap();
    let client = rmcp::ServiceExt::serve((), transport).await.unwrap();
    Server { client, pid }
}

fn program(case: &Case, web: &web::Web) -> String {
    case.code
        .replace("${WEB}", &web.url(""))
        .replace("${NAMED}", &web.named(""))
}

#[tokio::test]
async fn hostile_programs_end_as_expected_and_the_server_survives() {
    let dir = common::scratch_dir("hostile");
    let log = dir.join("audit.jsonl");
    let web = web::start().await;
    // Room for the cases' own clocks, the longest two minutes.
    let server = hostile_server(&dir, &web, &log, json!({ "timeoutMs": 120_000 })).await;
    let cases = cases();
    assert!(
        cases.len() >= 300,
        "the suite shrank: {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let ran = server
            .execute_with(json!({ "code": program(case, &web), "timeoutMs": case.timeout_ms }))
            .await;
        let kind = if ran.is_error {
            ran.error_kind().to_string()
        } else {
            "ok".to_string()
        };
        if !case.expect.split('|').any(|e| e.trim() == kind) {
            failures.push(format!(
                "{}: expected {}, got {kind}: {}",
                case.name,
                case.expect,
                ran.error_message()
            ));
        }
        if let Some(result) = &case.result
            && ran.result() != result
        {
            failures.push(format!(
                "{}: result {} instead of {result}",
                case.name,
                ran.result()
            ));
        }
        if let Some(tool) = &case.tool
            && ran.structured["error"]["tool"] != json!(tool)
        {
            failures.push(format!(
                "{}: the error names tool {} instead of {tool}",
                case.name, ran.structured["error"]["tool"]
            ));
        }
        if ran.duration_ms() > case.timeout_ms + SLACK_MS {
            failures.push(format!(
                "{}: took {} ms, past its limit of {} ms + {SLACK_MS}",
                case.name,
                ran.duration_ms(),
                case.timeout_ms
            ));
        }
        // Every part of an answer is capped before it is built: no hostile program makes
        // one past a few MiB (a 1 MiB log cap, shown as text and as structured content).
        let answer_bytes = ran.text.len() + ran.structured.to_string().len();
        if answer_bytes > MAX_ANSWER_BYTES {
            failures.push(format!(
                "{}: an answer of {answer_bytes} bytes, past {MAX_ANSWER_BYTES}",
                case.name
            ));
        }
        if ran.text.contains(SECRET) || ran.structured.to_string().contains(SECRET) {
            failures.push(format!("{}: the program saw the secret", case.name));
        }
        server.assert_alive().await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Retired workers are reaped in the background: give them time, not a moment.
    let zombies = |pid| -> Vec<_> {
        children(pid)
            .into_iter()
            .filter(|(_, state, _)| *state == 'Z')
            .collect()
    };
    let waited = std::time::Instant::now();
    while !zombies(server.pid).is_empty() && waited.elapsed() < std::time::Duration::from_secs(30) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let left = zombies(server.pid);
    assert!(left.is_empty(), "zombie workers: {left:?}");
    assert!(
        server.peak_rss_kib() < 200 * 1024,
        "server RSS {} KiB",
        server.peak_rss_kib()
    );

    let out = std::process::Command::new(BIN)
        .args(["audit", "verify"])
        .arg(&log)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{} records", 2 * cases.len())),
        "every case and every check after it is audited: {stdout}"
    );
}

/// A hundred programs at once, hostile and not: each ends as it should (or is refused as
/// `busy` when every slot and queue place is taken), and the server goes on. Each program
/// can meet one limit only, whatever the machine's speed: the endless ones allocate
/// nothing and have a short wall clock; the one that fills the heap has an 8 MiB heap and
/// a wall clock it cannot reach first, however long it waits for a slot.
#[tokio::test]
async fn a_hundred_programs_at_once() {
    let dir = common::scratch_dir("hostile-100");
    let log = dir.join("audit.jsonl");
    let web = web::start().await;
    let server = hostile_server(
        &dir,
        &web,
        &log,
        json!({ "heapMiB": 8, "timeoutMs": 120_000 }),
    )
    .await;
    let programs = [
        ("for (;;) {}", "timeout", 500),
        (
            "const a = [];\nfor (;;) a.push({ i: a.length });",
            "memory",
            120_000,
        ),
        (
            "return (await tools.toy.add({ a: 2, b: 3 })).sum;",
            "ok",
            120_000,
        ),
        (
            "function f() { return f() + 1; }\nreturn f();",
            "runtime",
            120_000,
        ),
        ("await new Promise(() => {});", "timeout", 500),
    ];
    let started = std::time::Instant::now();
    let runs = (0..100).map(|i| {
        let (code, expect, timeout_ms) = programs[i % programs.len()];
        let client = server.client.peer().clone();
        async move {
            let ran =
                common::execute_on(&client, json!({ "code": code, "timeoutMs": timeout_ms })).await;
            let kind = if ran.is_error {
                ran.error_kind().to_string()
            } else {
                "ok".into()
            };
            (i, expect, kind, ran)
        }
    });
    let outcomes = futures::future::join_all(runs).await;
    let mut busy = 0;
    for (i, expect, kind, ran) in &outcomes {
        if kind == "busy" {
            busy += 1;
            continue;
        }
        assert_eq!(kind, expect, "program {i}: {ran:?}");
        // Queued programs wait for a slot; none waits for ever.
        assert!(ran.duration_ms() < 100_000, "program {i}: {ran:?}");
    }
    assert!(busy < 100, "some programs ran");
    assert!(started.elapsed() < std::time::Duration::from_secs(240));
    server.assert_alive().await;
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Whether `pid` is one of the server's sandboxed workers (its first argument `__worker`).
fn is_worker(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).nth(1) == Some(b"__worker"))
}

/// Every waiting worker killed while idle (an operator, the OOM killer): the next programs
/// still run, on fresh workers, and none is reported `crashed`, since none of them ran in
/// a dead worker.
#[tokio::test]
async fn workers_killed_while_idle_are_not_handed_programs() {
    let dir = common::scratch_dir("hostile-idle-kill");
    let log = dir.join("audit.jsonl");
    let web = web::start().await;
    let server = hostile_server(&dir, &web, &log, json!({})).await;
    server.assert_alive().await;
    for round in 0..3 {
        // The pool refills in the background: wait until it holds workers, then kill them
        // all and wait until each is dead.
        let waited = std::time::Instant::now();
        let workers = loop {
            let workers: Vec<i32> = children(server.pid)
                .into_iter()
                .filter(|(pid, state, _)| *state != 'Z' && is_worker(*pid))
                .map(|(pid, _, _)| pid)
                .collect();
            if !workers.is_empty() || waited.elapsed() > std::time::Duration::from_secs(30) {
                break workers;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert!(!workers.is_empty(), "round {round}: no waiting worker");
        for pid in &workers {
            // SAFETY: sending a signal to a child process of the server under test.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        let waited = std::time::Instant::now();
        while children(server.pid)
            .iter()
            .any(|(pid, state, _)| workers.contains(pid) && *state != 'Z')
            && waited.elapsed() < std::time::Duration::from_secs(30)
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let ran = server.execute("return 6 * 7").await;
        assert!(
            !ran.is_error,
            "round {round}: a program given to a dead worker: {ran:?}"
        );
        assert_eq!(ran.result(), &json!(42));
    }
}

/// A call still pending when the program returns is in the calls list and in the audit
/// log: as not answered if it went out (it may have done what it does), as not sent if it
/// had not left the worker (then it is never made).
#[tokio::test]
async fn a_call_in_flight_when_the_program_returns_is_recorded() {
    let dir = common::scratch_dir("hostile-in-flight");
    let log = dir.join("audit.jsonl");
    let web = web::start().await;
    let server = hostile_server(&dir, &web, &log, json!({})).await;
    let ran = server
        .execute("tools.toy.slow({ ms: 3000 });\nreturn 'done';")
        .await;
    assert!(!ran.is_error, "{ran:?}");
    let calls = ran.structured["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{ran:?}");
    assert_eq!(calls[0]["tool"], "toy.slow");
    assert_eq!(calls[0]["ok"], false);
    // Whether the call had left the worker when the program ended depends on timing; either
    // way it has its record: sent and not awaited, or never sent (and never made).
    let error = calls[0]["error"].as_str().unwrap();
    assert!(
        error.contains("in flight") || error.contains("not sent"),
        "{ran:?}"
    );
    let audit = std::fs::read_to_string(&log).unwrap();
    assert!(
        audit.contains("abandoned: the program ended first")
            || audit.contains("not sent: the program ended first"),
        "{audit}"
    );
}

/// With `--isolation none`, a program stuck past its clock in a built-in that never polls
/// the interrupt cannot be stopped: its thread runs on. Once every thread is held so, the
/// server still answers at once, `busy`, saying why and what kills such programs.
#[tokio::test]
async fn abandoned_threads_make_the_server_busy_not_silent() {
    let server = common::start(&["--isolation", "none", "--concurrency", "1"]).await;
    // 2^53 - 1 elements: reversing them never ends, and never polls the interrupt.
    let stuck = server
        .execute_with(json!({
            "code": "const a = { length: 2 ** 53 - 1 };\nArray.prototype.reverse.call(a);\nreturn 1;",
            "timeoutMs": 200
        }))
        .await;
    assert_eq!(stuck.error_kind(), "timeout", "{stuck:?}");
    let next = server.execute("return 6 * 7").await;
    assert_eq!(next.error_kind(), "busy", "{next:?}");
    let message = next.error_message();
    assert!(
        message.contains("(1 abandoned, still running)") && message.contains("--isolation process"),
        "{message}"
    );
}

/// Four programs at once, each making 1,000 calls at once with 30 kB of arguments: the
/// frames (refused by the schema in the host, so only the pipes are busy) fill the
/// worker's pipes both ways, which must never hold both sides (and the
/// slots) for ever. Each ends on its own, and the server answers at once afterwards.
#[tokio::test]
async fn calls_that_fill_the_pipes_never_wedge_a_slot() {
    let dir = common::scratch_dir("hostile-pipes");
    let log = dir.join("audit.jsonl");
    let web = web::start().await;
    let server = hostile_server(&dir, &web, &log, json!({ "timeoutMs": 120_000 })).await;
    let code = "const pad = 'x'.repeat(30000);\nconst settled = await Promise.allSettled(Array.from({ length: 1000 }, () => tools.toy.add({ a: pad, b: 2 })));\nreturn settled.length;";
    let runs =
        (0..4).map(|_| {
            let client = server.client.peer().clone();
            async move {
                common::execute_on(&client, json!({ "code": code, "timeoutMs": 120_000 })).await
            }
        });
    for ran in futures::future::join_all(runs).await {
        assert!(!ran.is_error, "{ran:?}");
        assert_eq!(ran.result(), &json!(1000));
    }
    server.assert_alive().await;
}
