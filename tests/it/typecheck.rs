//! `execute_code { typecheck: true }` through the real binary, with TypeScript 7's native
//! `tsc` (installed by scripts/setup) and the toy upstream: type errors at the agent's
//! `line:column` with nothing run, a clean program run, the config default and its
//! override, names the sandbox lacks, a program that tries to make the checker read a host
//! file, the checker's wall clock, and a server without a checker.

use crate::common;

use common::{BIN, Server, start, toy};
use serde_json::{Value, json};

fn tsc() -> String {
    std::env::var("CODEMODE_TEST_TSC").unwrap_or_else(|_| {
        panic!("CODEMODE_TEST_TSC is not set: run the tests with ./scripts/test, which installs it")
    })
}

fn config(dir: &std::path::Path, typecheck: Value) -> String {
    common::write_config(
        dir,
        &json!({ "mcpServers": { "toy": toy() }, "codemode": { "typecheck": typecheck } }),
    )
}

const WRONG: &str =
    "console.log('started');\nconst r = await tools.toy.add({ a: 1, b: '2' });\nreturn r.total;";

#[tokio::test]
async fn type_errors_come_back_at_their_positions_and_nothing_runs() {
    let dir = common::scratch_dir("typecheck-errors");
    let config = config(&dir, json!({ "tsc": tsc() }));
    let log = dir.join("audit.jsonl");
    let server = start(&["--config", &config, "--audit-log", log.to_str().unwrap()]).await;

    let ran = server
        .execute_with(json!({ "code": WRONG, "typecheck": true }))
        .await;
    assert!(ran.is_error);
    assert_eq!(ran.error_kind(), "type", "{ran:?}");
    let message = ran.error_message();
    assert!(message.contains("2 errors"), "{message}");
    assert!(message.contains("2:39:"), "{message}");
    assert!(
        message.contains("Type 'string' is not assignable to type 'number'"),
        "{message}"
    );
    assert!(message.contains("3:10:"), "{message}");
    assert!(
        message.contains("Property 'total' does not exist"),
        "{message}"
    );
    assert_eq!(ran.position(), (2, 39));
    // Nothing ran: no logs, no calls.
    assert_eq!(ran.structured["logs"], json!([]), "{ran:?}");
    assert!(
        ran.structured["calls"].as_array().is_none_or(Vec::is_empty),
        "{ran:?}"
    );

    // Checked and clean: it runs. A result the tool does not describe (look-up's) is `any`
    // to the checker, so using it is no error; one it does (text's `{ result: string }`)
    // is held to its schema. A markdown fence is tolerated as when running.
    let ran = server
        .execute_with(json!({
            "code": "```ts\nconst r = await tools.toy.add({ a: 1, b: 2 });\nconst found = await tools.toy.look_up({ filter: { colour: 'red' } });\nconst words = await tools.toy.text({});\nconst n: number = r.sum;\nreturn { n, colour: found.colour, words: words.result.length };\n```",
            "typecheck": true
        }))
        .await;
    assert!(!ran.is_error, "{ran:?}");
    assert_eq!(
        ran.result(),
        &json!({ "n": 3, "colour": "red", "words": 15 })
    );

    // Names the sandbox does not have fail the check.
    let ran = server
        .execute_with(json!({ "code": "return process.env.HOME;", "typecheck": true }))
        .await;
    assert_eq!(ran.error_kind(), "type", "{ran:?}");
    assert!(
        ran.error_message()
            .contains("Cannot find name 'process': programs run in a sandbox, not Node.js")
            && ran.error_message().contains("tools, ToolError, console")
            && !ran.error_message().contains("@types/node"),
        "{ran:?}"
    );
    assert_eq!(ran.position(), (1, 8));

    // The commonest pattern checks: an array that grows, untyped parameters.
    let ran = server
        .execute_with(json!({
            "code": "const out = [];
for (const n of [1, 2]) out.push({ n, square: n * n });
function total(rows) { return rows.length; }
const found = await tools.$search('add');
return { out, total: total(out), found: found.map((t) => t.name) };",
            "typecheck": true
        }))
        .await;
    assert!(!ran.is_error, "{ran:?}");
    assert_eq!(ran.result()["total"], json!(2));
    // And a real mistake in it still fails.
    let ran = server
        .execute_with(json!({
            "code": "const out = [];
out.push({ n: 1 });
const m: string = out[0].n;
return m;",
            "typecheck": true
        }))
        .await;
    assert_eq!(ran.error_kind(), "type", "{ran:?}");
    assert_eq!(ran.position().0, 3, "{ran:?}");

    // A program cannot make the checker read a host file into its messages.
    let secret = dir.join("secret.ts");
    std::fs::write(&secret, "root_secret_value x y z").unwrap();
    let ran = server
        .execute_with(json!({
            "code": format!("/// <reference path=\"{}\" />\nconst x: number = 'a';\nreturn x;", secret.display()),
            "typecheck": true
        }))
        .await;
    assert_eq!(ran.error_kind(), "type", "{ran:?}");
    assert!(!ran.text.contains("root_secret_value"), "{ran:?}");

    // Without typecheck the same program runs (and fails at run time, on the call).
    let ran = server.execute(WRONG).await;
    assert_eq!(ran.error_kind(), "tool", "{ran:?}");
    assert!(ran.text.contains("started"), "{ran:?}");
    server.assert_alive().await;

    // The refused run is audited, with its kind.
    let audit = std::fs::read_to_string(&log).unwrap();
    assert!(audit.contains(r#""errorKind":"type""#), "{audit}");
}

#[tokio::test]
async fn the_config_default_checks_every_program_unless_a_call_says_not_to() {
    let dir = common::scratch_dir("typecheck-default");
    let config = config(&dir, json!({ "tsc": tsc(), "default": true }));
    let server = start(&["--config", &config]).await;
    let ran = server.execute("const n: number = 'x';\nreturn n;").await;
    assert_eq!(ran.error_kind(), "type", "{ran:?}");
    let ran = server
        .execute_with(
            json!({ "code": "const n: number = 'x' as any;\nreturn n;", "typecheck": false }),
        )
        .await;
    assert!(!ran.is_error, "{ran:?}");
    let ran = server
        .execute_with(json!({ "code": "const n: number = 'x';\nreturn n;", "typecheck": false }))
        .await;
    assert_eq!(ran.result(), &json!("x"));
}

#[tokio::test]
async fn the_checker_has_a_wall_clock() {
    let dir = common::scratch_dir("typecheck-clock");
    let config = config(&dir, json!({ "tsc": tsc(), "timeoutMs": 1 }));
    let server = start(&["--config", &config]).await;
    let ran = server
        .execute_with(json!({ "code": "return 1;", "typecheck": true }))
        .await;
    assert_eq!(ran.error_kind(), "type", "{ran:?}");
    assert!(
        ran.error_message().contains("codemode.typecheck.timeoutMs"),
        "{ran:?}"
    );
    server.assert_alive().await;
}

#[tokio::test]
async fn without_a_checker() {
    let dir = common::scratch_dir("typecheck-missing");
    // A tsc that is not there is refused at start, naming the key.
    let config_missing = config(&dir, json!({ "tsc": dir.join("no-tsc").to_str().unwrap() }));
    let output = std::process::Command::new(BIN)
        .args(["serve", "--config", &config_missing])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("codemode.typecheck.tsc"), "{stderr}");

    // No tsc anywhere: a call asking for the check is told how to get one; nothing runs.
    let plain = common::write_config(&dir, &json!({}));
    let (client, pid) =
        common::start_with((), &["--config", &plain], &[("PATH", "/usr/bin:/bin")]).await;
    let server = Server { client, pid };
    let ran = server
        .execute_with(json!({ "code": "console.log('ran');\nreturn 1;", "typecheck": true }))
        .await;
    assert_eq!(ran.error_kind(), "type", "{ran:?}");
    assert!(ran.error_message().contains("typescript@7"), "{ran:?}");
    assert!(!ran.text.contains("ran\n"), "{ran:?}");
    server.assert_alive().await;
}

#[test]
fn run_typecheck_refuses_a_program_with_type_errors() {
    let dir = common::scratch_dir("typecheck-cli");
    let config = common::write_config(
        &dir,
        &json!({ "codemode": { "typecheck": { "tsc": tsc() } } }),
    );
    let file = dir.join("job.ts");
    std::fs::write(
        &file,
        "console.log('ran');\nconst n: number = 'x';\nreturn n;\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "run",
            "--typecheck",
            "--config",
            &config,
            file.to_str().unwrap(),
        ])
        .env("CODEMODE_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("type error at 2:7"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ran"));
    // Without the flag it runs.
    let out = std::process::Command::new(BIN)
        .args(["run", "--config", &config, file.to_str().unwrap()])
        .env("CODEMODE_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
