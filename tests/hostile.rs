//! The hostile-program suite: each file in `tests/hostile/` is a program whose header
//! says how it must end (`// expect: ok` or an error kind, or several joined by `|` where
//! the engine may legitimately end either way; optionally `// result: <JSON>` and
//! `// timeoutMs: N`, default 1000; `// deno: <kinds>` replaces `expect` on the deno engine,
//! each such case listed in README with the reason). Run through the real server (worker processes, a
//! policy that denies `toy.fail`, `fetch` allowed to a local web server with a secret
//! header, the audit log on): every case must end as expected within its time limit +
//! 250 ms, the server must keep serving after each, and at the end no worker is left a
//! zombie and the audit chain verifies. `${WEB}` in a program is the web server's
//! `http://127.0.0.1:PORT`, `${NAMED}` the same through `localhost`.

mod common;

use std::path::PathBuf;

use common::{BIN, Server, children, toy, web};
use serde_json::{Value, json};

struct Case {
    name: String,
    code: String,
    expect: String,
    result: Option<Value>,
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
            Case {
                expect: engine_expect
                    .or_else(|| header("expect"))
                    .unwrap_or_else(|| panic!("{name}: no `// expect:`")),
                result: header("result").map(|r| serde_json::from_str(&r).unwrap()),
                timeout_ms: header("timeoutMs").map_or(1000, |t| t.parse().unwrap()),
                name,
                code,
            }
        })
        .collect()
}

/// The secret the egress rule adds; no program may ever see it.
const SECRET: &str = "hostile-secret-value";

/// Starts the server the suite runs against, with the web server `web` allowed.
async fn hostile_server(dir: &std::path::Path, web: &web::Web, log: &std::path::Path) -> Server {
    let config = common::write_config(
        dir,
        &json!({
            "mcpServers": { "toy": toy() },
            "codemode": {
                "policy": { "rules": [{ "tools": "toy.fail", "action": "deny" }] },
                "egress": {
                    "rules": [
                        { "url": format!("{}/**", web.url("")), "allowPrivate": true,
                          "headers": { "Authorization": "Bearer ${HOSTILE_TOKEN}" } },
                        { "url": format!("{}/**", web.named("")) }
                    ],
                    "timeoutMs": 500
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
    let server = hostile_server(&dir, &web, &log).await;
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
        if ran.duration_ms() > case.timeout_ms + 250 {
            failures.push(format!(
                "{}: took {} ms, past its limit of {} ms + 250",
                case.name,
                ran.duration_ms(),
                case.timeout_ms
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

    let zombies: Vec<_> = children(server.pid)
        .into_iter()
        .filter(|(_, state, _)| *state == 'Z')
        .collect();
    assert!(
        zombies.is_empty() || {
            // Retired workers are reaped in the background; give them a moment.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            children(server.pid)
                .iter()
                .all(|(_, state, _)| *state != 'Z')
        },
        "zombie workers: {zombies:?}"
    );
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
/// `busy` when every slot and queue place is taken), in time, and the server goes on.
#[tokio::test]
async fn a_hundred_programs_at_once() {
    // deno_core's QuickJS-ng backend allocates objects several times slower: with 100
    // programs on 2 cores, 500 ms of wall clock would not fill the memory program's heap.
    const TIMEOUT_MS: u64 = if cfg!(feature = "quickjs") { 500 } else { 2000 };
    let dir = common::scratch_dir("hostile-100");
    let log = dir.join("audit.jsonl");
    let web = web::start().await;
    let server = hostile_server(&dir, &web, &log).await;
    let programs = [
        ("for (;;) {}", "timeout"),
        ("const a = [];\nfor (;;) a.push({ i: a.length });", "memory"),
        ("return (await tools.toy.add({ a: 2, b: 3 })).sum;", "ok"),
        ("function f() { return f() + 1; }\nreturn f();", "runtime"),
        ("await new Promise(() => {});", "timeout"),
    ];
    let started = std::time::Instant::now();
    let runs = (0..100).map(|i| {
        let (code, expect) = programs[i % programs.len()];
        let client = server.client.peer().clone();
        async move {
            let ran =
                common::execute_on(&client, json!({ "code": code, "timeoutMs": TIMEOUT_MS })).await;
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
        assert!(ran.duration_ms() < 30_000, "program {i}: {ran:?}");
    }
    assert!(busy < 100, "some programs ran");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
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
