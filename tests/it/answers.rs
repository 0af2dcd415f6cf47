//! What a model reads of one execution fits its budget (`codemode.limits.outputChars`,
//! 24,000 characters by default, lowerable per call): the notice first, the head and
//! tail of each part, the text and the structured content alike; the whole output stays
//! readable for a while, by its owner only, at the resource the answer links.

use crate::common;

use serde_json::{Value, json};

const BUDGET: usize = 24_000;

/// Characters of the structured content as JSON.
fn structured_chars(ran: &common::Ran) -> usize {
    ran.structured.to_string().chars().count()
}

/// Through the real binary over stdio: a program that logs 200,000 lines, one returning
/// 20 MB or a 10,000-element array, and one throwing a 40 MB error each answer within the
/// budget, the notice first; a call may lower the budget, not raise it.
#[tokio::test]
async fn every_answer_fits_the_budget_with_the_notice_first() {
    let server = common::start(&[]).await;
    for (what, code) in [
        (
            "200,000 log lines",
            "for (let i = 0; i < 200000; i++) console.log('line ' + i);\nreturn 'done';",
        ),
        ("a 20 MB result", "return 'x'.repeat(20_000_000);"),
        (
            "a 10,000-element array",
            "return Array.from({ length: 10000 }, (_, i) => ({ i, name: 'item ' + i }));",
        ),
    ] {
        let ran = server.execute(code).await;
        let text = ran.text.chars().count();
        assert!(
            text <= BUDGET && structured_chars(&ran) <= BUDGET,
            "{what}: {text} characters of text, {} structured",
            structured_chars(&ran)
        );
        assert!(
            ran.text.starts_with("[output truncated:"),
            "{what}: the notice comes first: {}",
            &ran.text[..200.min(ran.text.len())]
        );
        assert!(
            ran.structured["truncated"][0].as_str().is_some_and(|n| n
                .starts_with("output truncated:")
                && n.contains("codemode://executions/")),
            "{what}: {}",
            ran.structured["truncated"]
        );
    }
    let logs = server
        .execute("for (let i = 0; i < 200000; i++) console.log('line ' + i);\nreturn 'done';")
        .await;
    assert_eq!(logs.result(), &json!("done"), "a small result stays whole");
    assert!(
        logs.text.contains("log lines cut here") && logs.text.contains("line 0"),
        "logs keep their head and say how many were cut"
    );

    let error = server
        .execute("throw new Error('x'.repeat(40_000_000));")
        .await;
    assert_eq!(error.error_kind(), "runtime");
    assert!(
        error.text.chars().count() <= BUDGET && error.error_message().contains("more bytes cut"),
        "a 40 MB error is cut where it is made: {} characters",
        error.text.len()
    );

    let lowered = server
        .execute_with(json!({
            "code": "return Array.from({ length: 2000 }, (_, i) => i);",
            "maxOutputChars": 3000
        }))
        .await;
    assert!(
        lowered.text.chars().count() <= 3000 && lowered.text.starts_with("[output truncated:"),
        "{}",
        lowered.text.len()
    );
    let raised = server
        .execute_with(json!({
            "code": "return Array.from({ length: 10000 }, (_, i) => i);",
            "maxOutputChars": 10_000_000
        }))
        .await;
    assert!(
        raised.text.chars().count() <= BUDGET,
        "a call cannot raise the server's budget"
    );
    server.assert_alive().await;
}

/// The whole output of a cut answer is its owner's: over HTTP with two tokens, the
/// linked resource gives alice everything the server kept, and bob, holding the same
/// URI, what anyone gets for one that never existed.
#[tokio::test]
async fn the_whole_output_is_its_owners_alone() {
    let dir = common::scratch_dir("answers-owner");
    let (alice, bob) = (
        "alice-token-long-enough-0001",
        "bob-token-long-enough-00002",
    );
    let server = common::http::HttpServer::start_with_token(&dir, &format!("{alice}\n{bob}"), &[]);
    let post = |token: &str, id: u32, method: &str, params: Value| {
        common::http::post_modern(&server, id, method, params)
            .bearer_auth(token)
            .send()
    };
    let ran = common::http::answer_of(
        post(
            alice,
            1,
            "tools/call",
            json!({"name": "execute_code", "arguments": {"code": "return Array.from({ length: 10000 }, (_, i) => ({ i, name: 'item ' + i }));"}}),
        )
        .await
        .unwrap(),
    )
    .await;
    let content = ran["result"]["content"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let uri = content
        .iter()
        .find(|c| c["type"] == json!("resource_link"))
        .and_then(|c| c["uri"].as_str())
        .unwrap_or_else(|| panic!("a resource link: {ran}"))
        .to_string();
    assert!(uri.starts_with("codemode://executions/") && uri.ends_with("/output"));
    let read = |token: &'static str, uri: String| {
        let post = &post;
        async move {
            common::http::answer_of(
                post(token, 2, "resources/read", json!({"uri": uri}))
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let whole = read(alice, uri.clone()).await;
    let text = whole["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.chars().count() > BUDGET && text.contains("item 0"),
        "the owner reads the whole output: {} characters",
        text.len()
    );
    let theirs = read(bob, uri.clone()).await;
    let made_up = "codemode://executions/AAAAAAAAAAAAAAAAAAAAAA/output".to_string();
    let none = read(bob, made_up.clone()).await;
    assert!(theirs["result"].is_null(), "{theirs}");
    assert_eq!(
        theirs["error"]["message"]
            .as_str()
            .map(|m| m.replace(&uri, "URI")),
        none["error"]["message"]
            .as_str()
            .map(|m| m.replace(&made_up, "URI")),
        "another token's output reads as one that never existed"
    );
}

/// Without tokens, a legacy session's whole outputs are its own, as its tasks are: the
/// URI copied into another session reads as one that never existed.
#[tokio::test]
async fn an_anonymous_sessions_whole_output_is_its_own() {
    let server = common::http::HttpServer::start(&[]);
    let (alice, bob) = (server.client().await, server.client().await);
    let Value::Object(arguments) =
        json!({"code": "return Array.from({ length: 10000 }, (_, i) => i);"})
    else {
        unreachable!()
    };
    let answer = alice
        .peer()
        .call_tool(
            rmcp::model::CallToolRequestParams::new("execute_code").with_arguments(arguments),
        )
        .await
        .unwrap();
    let uri = answer
        .content
        .iter()
        .find_map(|c| match c {
            rmcp::model::ContentBlock::ResourceLink(link) => Some(link.uri.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("a resource link: {answer:?}"));
    let request = || rmcp::model::ReadResourceRequestParams::new(uri.clone());
    assert!(
        alice.peer().read_resource(request()).await.is_ok(),
        "the session reads its own"
    );
    let theirs = bob
        .peer()
        .read_resource(request())
        .await
        .unwrap_err()
        .to_string();
    assert!(theirs.contains("no output is kept here"), "{theirs}");
}

/// Failures a model would not see: a program that works and logs but returns nothing is
/// told to `return` its value; `import` says a program is no module and what it has.
#[tokio::test]
async fn a_missing_return_and_an_import_say_what_to_do() {
    let server = common::start(&[]).await;
    let silent = server
        .execute("const rows = [1, 2, 3];\nconsole.log('found', rows.length);")
        .await;
    assert_eq!(silent.result(), &Value::Null);
    assert!(
        silent.structured["hints"][0]
            .as_str()
            .is_some_and(|h| h.contains("return value")),
        "{:?}",
        silent.structured
    );
    assert!(
        silent.text.contains("hint: the result is null"),
        "{}",
        silent.text
    );
    let quiet = server.execute("const x = 1;").await;
    assert!(
        quiet.structured.get("hints").is_none(),
        "nothing done, nothing to hint: {:?}",
        quiet.structured
    );
    let imported = server
        .execute("import fs from 'fs';\nreturn fs.readFileSync('/etc/passwd');")
        .await;
    assert_eq!(imported.error_kind(), "syntax");
    assert!(
        imported.error_message().contains("not a module")
            && imported.error_message().contains("tools.<server>.<tool>"),
        "{}",
        imported.error_message()
    );
}

/// A call that fails with nobody awaiting it is named in the hints, with its line:column
/// and its failure (a refusal of the glue's and one of the host's alike), and so is a call
/// still unanswered when the program ends; a failure the program awaited and caught is
/// its own business, and gets none.
#[tokio::test]
async fn a_failure_nobody_awaited_is_named_in_the_hints() {
    let dir = common::scratch_dir("unawaited");
    let config = common::write_config(&dir, &json!({ "mcpServers": { "toy": common::toy() } }));
    for isolation in ["none", "process"] {
        let server = common::start(&["--config", &config, "--isolation", isolation]).await;
        unawaited_failures_are_hinted(&server).await;
    }
}

async fn unawaited_failures_are_hinted(server: &common::Server) {
    let dropped = server
        .execute(
            "const sum = await tools.toy.add({ a: 1, b: 2 });\ntools.toy.fail('not an object');\n  tools.toy.fail({});\nawait tools.toy.add({ a: 3, b: 4 });\nreturn sum;",
        )
        .await;
    assert_eq!(dropped.result(), &json!({ "sum": 3 }), "{}", dropped.text);
    let hints: Vec<&str> = dropped.structured["hints"]
        .as_array()
        .map(|h| h.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(hints.len(), 2, "{hints:?}");
    assert!(
        hints[0].starts_with("tools.toy.fail failed at 2:")
            && hints[0]
                .contains(" but the program did not await it: the arguments must be one object"),
        "{}",
        hints[0]
    );
    assert!(
        hints[1].starts_with("tools.toy.fail failed at 3:")
            && hints[1].contains(" but the program did not await it: invalid arguments")
            && hints[1].contains("reason"),
        "{}",
        hints[1]
    );
    assert!(
        dropped.text.contains("\nhint: tools.toy.fail failed at 2:"),
        "{}",
        dropped.text
    );

    let caught = server
        .execute(
            "try { await tools.toy.fail({ reason: 'disk full' }); } catch (e) { return 'caught: ' + e.message; }",
        )
        .await;
    assert!(
        caught
            .result()
            .as_str()
            .is_some_and(|r| r.starts_with("caught: tools.toy.fail failed")),
        "{}",
        caught.text
    );
    assert!(
        caught.structured.get("hints").is_none(),
        "{:?}",
        caught.structured
    );
    let late = server
        .execute("const p = tools.toy.fail({});\nawait tools.toy.add({ a: 1, b: 1 });\ntry { await p; } catch (e) { return 'late'; }")
        .await;
    assert_eq!(late.result(), &json!("late"));
    assert!(
        late.structured.get("hints").is_none(),
        "awaited late: {:?}",
        late.structured
    );

    // A hostile program cannot make the hints grow (a loop of dropped failures) nor run its
    // code through them (a getter on an error it saw). (The hints pass through no array a
    // program could poison; a poisoned Array.prototype is not tried here, as it stalls
    // deno_core's own event loop until the time limit.)
    let hostile = server
        .execute(
            "const unused = 0;\nconst seen = tools.toy.fail({});\nseen.then(null, (e) => { Object.defineProperty(e, 'message', { get() { throw new Error('boom'); } }); throw e; });\nawait tools.toy.add({ a: 1, b: 1 });\nfor (let i = 0; i < 40; i++) tools.toy.fail({});\nawait tools.toy.add({ a: 1, b: 1 });\nreturn 'done';",
        )
        .await;
    assert_eq!(hostile.result(), &json!("done"), "{}", hostile.text);
    let hints = hostile.structured["hints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(hints.len(), 5, "{hints:?}");
    assert!(
        hints[0]
            .as_str()
            .is_some_and(|h| h.starts_with("tools.toy.fail failed at 2:")
                && h.contains("did not await it: invalid arguments")),
        "the failure's own message, not the program's getter: {hints:?}"
    );
    assert!(
        hints[1..].iter().all(|h| h
            .as_str()
            .is_some_and(|h| h.starts_with("tools.toy.fail failed at 5:") && h.len() < 1_000)),
        "{hints:?}"
    );
    let long = server
        .execute("return await tools.$search('word '.repeat(1_000_000));")
        .await;
    assert!(
        long.error_message().contains("more than the 2048 it takes"),
        "{}",
        long.error_message()
    );

    let unanswered = server
        .execute("tools.toy.slow({ ms: 60000 });\nreturn 'done';")
        .await;
    assert_eq!(unanswered.result(), &json!("done"));
    assert!(
        unanswered.structured["hints"][0].as_str().is_some_and(
            |h| h.starts_with("tools.toy.slow was still unanswered when the program ended")
        ),
        "{:?}",
        unanswered.structured
    );
}

/// A call to a server that is down says so: which server, since when, its last error, and
/// what to do; not that its namespace is empty.
#[tokio::test]
async fn a_call_to_a_down_server_says_it_is_down_since_when_and_why() {
    let dir = common::scratch_dir("down-server");
    let config = common::write_config(
        &dir,
        &json!({ "mcpServers": {
            "time": { "command": "/bin/sh", "args": ["-c", "echo 'no tzdata here' >&2; exit 3"] },
            "toy": common::toy(),
        } }),
    );
    let server = common::start(&["--config", &config]).await;
    let ran = server
        .execute("const t = await tools.time.get_current_time({});\nreturn t;")
        .await;
    let message = ran.error_message();
    assert!(
        message.starts_with("ToolError: tools.time.get_current_time cannot be called now: its server \"time\" (mcpServers.time) is down since ")
            && message.contains(" UTC (")
            && message.contains("It has listed no tools yet. Try again later"),
        "{message}"
    );
    assert!(!message.contains("is empty"), "{message}");
    assert_eq!(ran.position().0, 1, "{message}");
    let up = server
        .execute("return await tools.toy.add({ a: 1, b: 2 });")
        .await;
    assert_eq!(
        up.result(),
        &json!({ "sum": 3 }),
        "the other server is called as before"
    );
}

/// The `mcpServers` entry of a 220-tool upstream (`tests/upstreams/wide.py`).
fn wide() -> Value {
    json!({ "command": common::python(), "args": [concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upstreams/wide.py")] })
}

/// With 220 tools the description names namespaces only; a program finds the tool it
/// needs with `tools.$search`, reads it with `tools.$describe` and calls it, in one
/// execution. Discovery is no namespace, and a name that does not exist says what does.
#[tokio::test]
async fn a_program_finds_and_calls_a_tool_it_was_not_shown() {
    let dir = common::scratch_dir("discovery");
    let config = common::write_config(&dir, &json!({ "mcpServers": { "wide": wide() } }));
    let server = common::start(&["--config", &config]).await;
    let tools = server.client.list_all_tools().await.unwrap();
    let description = tools
        .iter()
        .find(|t| t.name == "execute_code")
        .and_then(|t| t.description.as_deref())
        .unwrap_or_default()
        .to_string();
    assert!(
        !description.contains("convert_currency") && description.contains("tools.$search"),
        "the tool is not shown, discovery is: {description}"
    );
    let ran = server
        .execute(
            "const [hit] = await tools.$search('convert currency');\nconst described = await tools.$describe(hit.name);\nconst out = await tools[hit.namespace][hit.tool]({ amount: 21, from: 'EUR', to: 'USD' });\nreturn { name: hit.name, signature: hit.signature.includes('amount: number'), required: described.inputSchema.required, out, keys: Object.keys(tools) };",
        )
        .await;
    assert_eq!(
        ran.result(),
        &json!({
            "name": "tools.wide.convert_currency",
            "signature": true,
            "required": ["amount", "from", "to"],
            "out": { "amount": 42, "currency": "USD" },
            "keys": ["wide"],
        }),
        "{}",
        ran.text
    );
    let listed = server
        .execute("return (await tools.$search('weather', { limit: 3 })).map((t) => t.name);")
        .await;
    assert_eq!(
        listed.result().as_array().map(Vec::len),
        Some(3),
        "{}",
        listed.text
    );
    let unknown = server
        .execute("return await tools.$describe('wide.convert_money');")
        .await;
    assert_eq!(unknown.error_kind(), "tool");
    assert!(
        unknown.error_message().contains(
            "no tool is called \"wide.convert_money\"; similar: tools.wide.convert_currency"
        ),
        "{}",
        unknown.error_message()
    );
    let bad = server.execute("return await tools.$search(42);").await;
    assert!(
        bad.error_message()
            .contains("tools.$search takes (query: string"),
        "{}",
        bad.error_message()
    );
}
