//! `execute_code` through the real binary over stdio, with rmcp's client.

use crate::common;

use std::time::{Duration, Instant};

use common::{BIN, start};
use serde_json::{Value, json};

#[tokio::test]
async fn lists_execute_code_with_the_schemas_in_tool_schemas() {
    let server = start(&[]).await;
    let info = server.client.peer_info().expect("server info");
    let instructions = info.instructions.clone().unwrap_or_default();
    assert!(instructions.contains("execute_code"), "{instructions}");

    let tools = server.client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["execute_code", "search_tools"]);
    let description = tools[0].description.clone().unwrap_or_default();
    assert!(description.contains("return"), "{description}");

    let mut served_execute = Value::Null;
    for tool in &tools {
        let served = json!({
            "name": tool.name,
            "inputSchema": Value::Object((*tool.input_schema).clone()),
            "outputSchema": tool.output_schema.as_ref().map(|s| Value::Object((**s).clone())),
        });
        let path = format!(
            "{}/tool-schemas/{}.json",
            env!("CARGO_MANIFEST_DIR"),
            tool.name
        );
        let served_text = serde_json::to_string_pretty(&served).unwrap() + "\n";
        if std::env::var_os("UPDATE_TOOL_SCHEMAS").is_some() {
            std::fs::write(&path, &served_text).unwrap();
        }
        let on_file = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_file == served_text,
            "the served schemas of {} differ from tool-schemas/{}.json.\n\
             If the change is intended, rewrite the files with:\n  \
             UPDATE_TOOL_SCHEMAS=1 cargo test --release --test it stdio_server::lists_execute_code\n\
             served:\n{served_text}",
            tool.name,
            tool.name
        );
        if tool.name == "execute_code" {
            served_execute = served;
        }
    }
    let served = served_execute;
    assert_eq!(served["inputSchema"]["required"], json!(["code"]));
}

#[tokio::test]
async fn typescript_program_returns_value_and_logs_in_order() {
    let server = start(&[]).await;
    let code = r#"
interface Row { n: number; label?: string }
const rows: Row[] = [3, 1, 2].map((n): Row => ({ n }));
console.log("sorting", rows.length, "rows");
console.info({ first: rows[0] });
console.warn("careful");
console.error(new Error("not thrown"));
console.debug([1, "two"]);
await new Promise<void>((resolve) => setTimeout(resolve, 5));
return rows.sort((a, b) => a.n - b.n) satisfies Row[];
"#;
    let ran = server.execute(code).await;
    assert!(!ran.is_error, "{ran:?}");
    assert_eq!(ran.result(), &json!([{ "n": 1 }, { "n": 2 }, { "n": 3 }]));
    let logs = ran.structured["logs"].as_array().unwrap();
    let levels: Vec<&str> = logs.iter().map(|l| l["level"].as_str().unwrap()).collect();
    assert_eq!(levels, ["log", "info", "warn", "error", "debug"]);
    assert_eq!(logs[0]["message"], "sorting 3 rows");
    assert_eq!(logs[1]["message"], "{ first: { n: 3 } }");
    assert!(
        logs[3]["message"]
            .as_str()
            .unwrap()
            .starts_with("Error: not thrown")
    );
    assert_eq!(logs[4]["message"], "[1, \"two\"]");
    // The text block leads with the result, then the logs.
    assert!(
        ran.text.starts_with(r#"[{"n":1},{"n":2},{"n":3}]"#),
        "{}",
        ran.text
    );
    assert!(ran.text.contains("[warn] careful"), "{}", ran.text);
}

#[tokio::test]
async fn javascript_program_and_undefined_result() {
    let server = start(&[]).await;
    let ran = server
        .execute("const total = [1, 2, 3].reduce((a, b) => a + b, 0);\nreturn { total, at: new Date(0) };")
        .await;
    assert_eq!(
        ran.result(),
        &json!({ "total": 6, "at": "1970-01-01T00:00:00.000Z" })
    );
    let ran = server.execute("const x = 1;").await;
    assert!(!ran.is_error);
    assert_eq!(ran.result(), &Value::Null);
    assert_eq!(ran.text, "null");
}

#[tokio::test]
async fn markdown_fence_is_accepted_and_positions_hold() {
    let server = start(&[]).await;
    let ran = server
        .execute("```ts\nconst a: number = 1;\nthrow new Error('boom');\n```")
        .await;
    assert_eq!(ran.error_kind(), "runtime");
    let (line, column) = ran.position();
    assert_eq!(line, 3, "{ran:?}");
    assert!((7..=11).contains(&column), "{ran:?}");
}

#[tokio::test]
async fn syntax_errors_name_line_and_column_in_typescript_source() {
    let server = start(&[]).await;
    let ran = server
        .execute("const ok: string = 'x';\nconst broken: number = (1 + ;\nreturn ok;")
        .await;
    assert!(ran.is_error);
    assert_eq!(ran.error_kind(), "syntax");
    let (line, column) = ran.position();
    assert_eq!(line, 2, "{ran:?}");
    assert!(column >= 24, "{ran:?}");
    assert!(ran.text.starts_with("syntax error at 2:"), "{}", ran.text);

    let ran = server
        .execute("enum Color { Red }\nreturn Color.Red;")
        .await;
    assert_eq!(ran.error_kind(), "syntax");
    assert_eq!(ran.position().0, 1);
    assert!(ran.error_message().contains("plain objects"), "{ran:?}");
    server.assert_alive().await;
}

#[tokio::test]
async fn runtime_errors_carry_agent_positions_stack_and_logs_so_far() {
    let server = start(&[]).await;
    let code = "type User = { name: string };\nfunction pick(u: User | undefined): string {\n  return u!.name.toUpperCase();\n}\nconsole.log('step 1');\nreturn pick(undefined);";
    let ran = server.execute(code).await;
    assert!(ran.is_error);
    assert_eq!(ran.error_kind(), "runtime");
    assert_eq!(ran.position().0, 3, "{ran:?}");
    assert!(ran.error_message().starts_with("TypeError:"), "{ran:?}");
    let stack = ran.structured["error"]["stack"].as_str().unwrap();
    assert!(stack.contains("at pick (program.ts:3:"), "{stack}");
    // `at <anonymous> (program.ts:6:...)` on QuickJS, `at program.ts:6:...` in V8's format.
    assert!(stack.contains("program.ts:6:"), "{stack}");
    assert!(
        !stack.contains("codemode:"),
        "glue frames must be trimmed: {stack}"
    );
    assert_eq!(ran.structured["logs"][0]["message"], "step 1");
    assert!(
        ran.text.contains("logs so far:\n[log] step 1"),
        "{}",
        ran.text
    );

    // A thrown non-Error value and an unknown name.
    let ran = server.execute("throw 'plain string';").await;
    assert_eq!(ran.error_kind(), "runtime");
    assert!(ran.error_message().contains("plain string"));
    let ran = server
        .execute("const a = 1;\nreturn missingThing(a);")
        .await;
    assert_eq!(ran.position(), (2, 8));
    assert!(
        ran.error_message().contains("console, setTimeout"),
        "{ran:?}"
    );

    // Errors thrown in async code after an await.
    let ran = server
        .execute("await null;\nawait new Promise((r) => setTimeout(r, 1));\nnull.x;")
        .await;
    assert_eq!(ran.error_kind(), "runtime");
    assert_eq!(ran.position().0, 3);
    server.assert_alive().await;
}

#[tokio::test]
async fn timeout_ends_busy_loops_and_microtask_chains_near_the_deadline() {
    let server = start(&[]).await;
    for code in [
        "while (true) {}",
        "const spin = async () => { for (;;) await null; };\nawait spin();",
        "for (;;) { try { while (true) {} } catch {} }",
        "await new Promise(() => {});",
        "await new Promise((r) => setTimeout(r, 60000));",
    ] {
        let started = Instant::now();
        let ran = server
            .execute_with(json!({ "code": code, "timeoutMs": 300 }))
            .await;
        let elapsed = started.elapsed();
        assert_eq!(ran.error_kind(), "timeout", "{code}: {ran:?}");
        assert!(ran.error_message().contains("300 ms"), "{ran:?}");
        assert!(ran.duration_ms() >= 300, "{code}: stopped early: {ran:?}");
        // Generous bounds: the kind proves which limit fired; on a loaded machine the
        // watchdog may wake late, but never by seconds.
        assert!(
            ran.duration_ms() < 300 + 5000,
            "{code}: not ended near the deadline: {ran:?}"
        );
        assert!(elapsed < Duration::from_secs(20), "{code}: {elapsed:?}");
    }
    server.assert_alive().await;
}

#[tokio::test]
async fn request_timeout_never_raises_the_configured_limit() {
    let server = start(&["--timeout-ms", "200"]).await;
    let ran = server
        .execute_with(json!({ "code": "while(true){}", "timeoutMs": 60000 }))
        .await;
    assert_eq!(ran.error_kind(), "timeout", "{ran:?}");
    // Far below the requested 60 s: the configured 200 ms held.
    assert!(ran.duration_ms() < 5_000, "{ran:?}");
    assert!(ran.error_message().contains("200 ms"), "{ran:?}");
}

#[tokio::test]
async fn memory_bomb_ends_with_memory_even_when_caught_and_rss_stays_capped() {
    let server = start(&[]).await;
    let plain = "const hoard = [];\nwhile (true) hoard.push(new Array(100000).fill(7));";
    let ran = server.execute(plain).await;
    assert_eq!(ran.error_kind(), "memory", "{ran:?}");
    assert!(ran.error_message().contains("64 MiB"), "{ran:?}");

    let stubborn = "const hoard = [];\nfor (;;) {\n  try { hoard.push('x'.repeat(1 << 20) + hoard.length); }\n  catch (e) { console.log('caught', String(e)); hoard.length = hoard.length; }\n}";
    let ran = server.execute(stubborn).await;
    assert_eq!(ran.error_kind(), "memory", "{ran:?}");

    let objects =
        "const m = new Map();\nlet i = 0;\nwhile (true) m.set(i, { i: i++, s: String(i) });";
    let ran = server.execute(objects).await;
    assert_eq!(ran.error_kind(), "memory", "{ran:?}");

    // The isolate never got past the cap: the whole server stays within it plus a margin.
    let peak = server.peak_rss_kib();
    eprintln!("peak RSS of the server after three memory bombs: {peak} KiB");
    assert!(peak < (64 + 32) * 1024, "peak RSS {peak} KiB");
    server.assert_alive().await;
}

#[tokio::test]
async fn a_program_cannot_forge_the_kind_of_its_failure() {
    let server = start(&[]).await;
    let ran = server
        .execute("const e = new Error('out of memory'); e.name = 'InternalError'; throw e;")
        .await;
    assert_eq!(ran.error_kind(), "runtime");
    let ran = server.execute("throw new Error('interrupted');").await;
    assert_eq!(ran.error_kind(), "runtime");
}

#[tokio::test]
async fn unrepresentable_results_are_output_errors_with_their_path() {
    let server = start(&[]).await;
    let cases = [
        (
            "const o: any = { a: { b: {} } };\no.a.b.back = o;\nreturn o;",
            "result.a.b.back refers back to result",
        ),
        ("return { big: 10n };", "result.big is a BigInt"),
        (
            "return { list: [1, () => 2] };",
            "result.list[1] is a function",
        ),
        ("return Symbol('s');", "result is a symbol"),
    ];
    for (code, expected) in cases {
        let ran = server.execute(code).await;
        assert_eq!(ran.error_kind(), "output", "{code}: {ran:?}");
        assert!(ran.error_message().contains(expected), "{code}: {ran:?}");
    }
    let ran = server
        .execute("return { m: new Map([['k', 1]]), s: new Set([1, 2]), u: undefined, n: NaN, t: new Uint8Array([1, 2]) };")
        .await;
    assert_eq!(
        ran.result(),
        &json!({ "m": { "k": 1 }, "s": [1, 2], "n": null, "t": [1, 2] })
    );
    server.assert_alive().await;
}

#[tokio::test]
async fn deep_recursion_is_a_runtime_error_not_a_crash() {
    let server = start(&[]).await;
    let ran = server
        .execute(
            "function down(n: number): number {\n  return down(n + 1) + 1;\n}\nreturn down(0);",
        )
        .await;
    assert_eq!(ran.error_kind(), "runtime", "{ran:?}");
    assert!(ran.error_message().contains("stack"), "{ran:?}");
    assert_eq!(ran.position().0, 2);
    let stack = ran.structured["error"]["stack"].as_str().unwrap();
    assert!(stack.lines().count() <= 13, "{stack}");
    let ran = server
        .execute("const deep = JSON.parse('['.repeat(100000) + ']'.repeat(100000));")
        .await;
    assert_eq!(ran.error_kind(), "runtime", "{ran:?}");
    server.assert_alive().await;
}

#[tokio::test]
async fn output_and_result_caps_cut_with_a_notice() {
    // The isolate's caps, with the answer budget out of their way (tests/it/answers.rs).
    let server = start(&[
        "--output-kib",
        "64",
        "--result-kib",
        "16",
        "--output-chars",
        "10000000",
    ])
    .await;
    let ran = server
        .execute("for (let i = 0; i < 2000; i++) console.log('line', i, 'x'.repeat(100));\nreturn 'done';")
        .await;
    assert!(!ran.is_error);
    assert_eq!(ran.result(), &json!("done"));
    let kept: usize = ran.structured["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().len())
        .sum();
    assert!(kept <= 64 * 1024, "{kept}");
    let notice = ran.structured["truncated"][0].as_str().unwrap();
    // Each line costs its text and its share of the framing, so less than 64 KiB of text
    // is kept.
    assert!(
        notice.contains("logs cut at the output cap: kept"),
        "{notice}"
    );
    assert!(notice.contains("later console calls dropped"), "{notice}");
    assert!(
        ran.text.contains("[logs cut at the output cap"),
        "{}",
        ran.text
    );

    // One enormous line is cut too.
    let ran = server
        .execute("console.log('y'.repeat(1 << 20)); return 1;")
        .await;
    // The cap less the one line's share of the framing.
    assert_eq!(
        ran.structured["logs"][0]["message"].as_str().unwrap().len(),
        64 * 1024 - 64
    );

    let ran = server.execute("return 'z'.repeat(40000);").await;
    assert!(!ran.is_error);
    let kept = ran.result().as_str().unwrap();
    assert_eq!(kept.len(), 16 * 1024);
    let notice = ran.structured["truncated"][0].as_str().unwrap();
    assert!(notice.contains("result cut at the result cap"), "{notice}");
    assert!(notice.contains("40002 bytes"), "{notice}");
    server.assert_alive().await;
}

#[tokio::test]
async fn no_ambient_authority_reaches_the_program() {
    let server = start(&[]).await;
    let ran = server
        .execute(
            "return ['require', 'process', 'Deno', 'fetch', 'Bun', 'os', 'std', 'print', 'XMLHttpRequest', 'WebSocket', 'module', 'exports', '__dirname']\n  .filter((name) => name in globalThis);",
        )
        .await;
    assert_eq!(ran.result(), &json!([]), "{ran:?}");

    for code in [
        "return await import('fs');",
        "return await import('os');",
        "return await import('./secret.js');",
        "return require('fs');",
        "return process.env;",
        "return Deno.readTextFileSync('/etc/passwd');",
        "return fetch('http://127.0.0.1/');",
    ] {
        let ran = server.execute(code).await;
        assert!(ran.is_error, "{code} must fail: {ran:?}");
        // A literal fetch is refused by the pre-flight scan, before anything runs.
        let kind = if code.contains("fetch") {
            "policy"
        } else {
            "runtime"
        };
        assert_eq!(ran.error_kind(), kind, "{code}: {ran:?}");
    }
    let ran = server
        .execute("const url = ['http://127.0.0.1/'][0];\nreturn await fetch(url);")
        .await;
    assert_eq!(ran.error_kind(), "runtime", "{ran:?}");
    assert!(
        ran.error_message().contains("fetch is not defined"),
        "{ran:?}"
    );
    // eval and Function exist but reach nothing more than the program itself.
    let ran = server
        .execute(
            "return [typeof eval('globalThis.process'), typeof Function('return this')().require];",
        )
        .await;
    assert_eq!(ran.result(), &json!(["undefined", "undefined"]));

    // Timers with absurd delays neither crash nor hold up the result.
    let ran = server
        .execute("setTimeout(() => {}, 1e308); setInterval(() => {}, -5); setTimeout(() => {}, NaN);\nreturn 'returned';")
        .await;
    assert_eq!(ran.result(), &json!("returned"), "{ran:?}");

    // What the program does have.
    let ran = server
        .execute(
            "const bytes = new TextEncoder().encode('héllo');\nconst clone = structuredClone({ d: new Date(0), m: new Map([[1, 2]]) });\nlet ticks = 0; const id = setInterval(() => { ticks++; }, 1);\nawait new Promise((r) => setTimeout(r, 20)); clearInterval(id);\nreturn [bytes.length, new TextDecoder().decode(bytes), clone.m.get(1), clone.d.getTime(), btoa('hi'), atob('aGk='), ticks > 0, typeof queueMicrotask];",
        )
        .await;
    assert_eq!(
        ran.result(),
        &json!([6, "héllo", 2, 0, "aGk=", "hi", true, "function"]),
        "{ran:?}"
    );
}

#[tokio::test]
async fn every_execution_gets_a_fresh_isolate() {
    let server = start(&[]).await;
    let ran = server
        .execute("globalThis.leak = 'secret'; Array.prototype.polluted = 1; Object.freeze(JSON); return 1;")
        .await;
    assert!(!ran.is_error);
    let ran = server
        .execute("return [typeof globalThis.leak, [].polluted, Object.isFrozen(JSON)];")
        .await;
    assert_eq!(ran.result(), &json!(["undefined", null, false]));
}

#[tokio::test]
async fn twenty_concurrent_calls_all_answer_correctly() {
    let server = start(&[]).await;
    let calls = (0..20).map(|i| {
        let server = &server;
        async move {
            let ran = server
                .execute(&format!(
                    "await new Promise((r) => setTimeout(r, 20));\nconsole.log('call {i}');\nreturn {i} * 2;"
                ))
                .await;
            (i, ran)
        }
    });
    for (i, ran) in futures::future::join_all(calls).await {
        assert!(!ran.is_error, "{ran:?}");
        assert_eq!(ran.result(), &json!(i * 2));
        assert_eq!(ran.structured["logs"][0]["message"], format!("call {i}"));
    }
}

#[tokio::test]
async fn past_the_slots_and_the_queue_new_calls_are_busy() {
    let server = start(&["--concurrency", "1", "--queue", "1"]).await;
    // The first run holds the only slot for 5 s (well under the 30 s default limit): the
    // offsets below are small next to it, so the second call finds the slot taken and
    // waits in the queue, and the third finds both full, with seconds to spare.
    let slow = json!({ "code": "await new Promise((r) => setTimeout(r, 5000)); return 'slow';" });
    let (first, second, third) = tokio::join!(
        server.execute_with(slow),
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            server.execute("return 'queued';").await
        },
        async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            server.execute("return 'third';").await
        },
    );
    assert_eq!(first.result(), &json!("slow"), "{first:?}");
    assert_eq!(
        second.result(),
        &json!("queued"),
        "the queued call runs: {second:?}"
    );
    assert_eq!(third.error_kind(), "busy", "{third:?}");
    assert!(third.error_message().contains("nothing was run"));
    server.assert_alive().await;
}

#[tokio::test]
async fn bad_arguments_get_a_clear_error_and_the_server_keeps_serving() {
    let server = start(&[]).await;
    for (arguments, expected) in [
        (json!({ "source": "return 1" }), "unknown field `source`"),
        (json!({}), "missing field `code`"),
        (json!({ "code": 42 }), "expected a string"),
        (
            json!({ "code": "return 1", "timeoutMs": -5 }),
            "invalid argument timeoutMs: invalid value: integer `-5`",
        ),
        (
            json!({ "code": "return 1", "timeoutMs": 0 }),
            "invalid argument timeoutMs: must be at least 1",
        ),
    ] {
        let Value::Object(arguments) = arguments else {
            unreachable!()
        };
        let answer = server
            .client
            .call_tool(
                rmcp::model::CallToolRequestParams::new("execute_code").with_arguments(arguments),
            )
            .await;
        let text = match answer {
            Ok(result) => {
                assert_eq!(result.is_error, Some(true), "{result:?}");
                format!("{:?}", result.content)
            }
            Err(err) => err.to_string(),
        };
        assert!(text.contains(expected), "{expected}: {text}");
    }
    server.assert_alive().await;
}

#[tokio::test]
async fn malformed_requests_do_not_take_the_server_down() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let mut child = Command::new(BIN)
        .env("CODEMODE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut send = |line: &str| {
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    };
    let mut read = || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        line
    };
    send(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#,
    );
    let init: Value = serde_json::from_str(&read()).unwrap();
    assert_eq!(init["id"], 1);
    send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    send("this is not json {");
    send(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"no_such_tool","arguments":{}}}"#,
    );
    send(
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"execute_code","arguments":{"code":"console.log('to stdout?'); return 5"}}}"#,
    );
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let line = read();
        assert!(
            !line.is_empty(),
            "server closed stdout after malformed input"
        );
        // Every line on stdout is a JSON-RPC message: nothing else may write there.
        let message: Value = serde_json::from_str(&line).expect("stdout carries only JSON-RPC");
        if message.get("id").is_some_and(|id| id == 2 || id == 3) {
            answers.push(message);
        }
    }
    let by_id = |id: u64| answers.iter().find(|m| m["id"] == id).unwrap();
    assert!(by_id(2).get("error").is_some(), "{:?}", by_id(2));
    assert_eq!(by_id(3)["result"]["structuredContent"]["result"], 5);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn a_cancelled_request_stops_its_isolate_and_frees_the_slot() {
    let server = start(&["--concurrency", "1", "--queue", "0"]).await;
    // rmcp's client sends notifications/cancelled when the call's future is dropped.
    let dropped = tokio::time::timeout(
        Duration::from_millis(200),
        server.execute("while (true) {}"),
    )
    .await;
    assert!(dropped.is_err(), "the endless program cannot have answered");
    common::assert_slot_frees(|| server.execute("return 'slot free'")).await;
}

#[tokio::test]
async fn logged_errors_show_positions_in_the_agent_source() {
    let server = start(&[]).await;
    let ran = server
        .execute("const a = 1;\nfunction fail() {\n  return new Error('logged');\n}\nconsole.error(fail());\nreturn a;")
        .await;
    let message = ran.structured["logs"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("Error: logged\n"), "{message}");
    assert!(message.contains("at fail (program.ts:3:"), "{message}");
}
