//! `serve --http`: streamable HTTP and legacy SSE served by the real binary, to real
//! clients (rmcp's streamable HTTP client; codemode-mcp's own legacy-SSE upstream client;
//! raw HTTP for what clients must be refused), with its security checks, caps and
//! graceful shutdown.

use crate::common;

use std::time::{Duration, Instant};

use common::http::{HttpServer, execute, initialize_as, initialize_body, post_mcp};
use rmcp::{
    model::{CallToolRequestParams, ReadResourceRequestParams},
    transport::streamable_http_client::StreamableHttpClientTransportConfig,
};
use serde_json::{Value, json};

#[tokio::test]
async fn streamable_http_offers_what_stdio_offers() {
    let server = HttpServer::start(&[]);
    let client = server.client().await;
    let info = client.peer_info().expect("server info");
    assert_eq!(info.server_info.as_ref().unwrap().name, "codemode-mcp");

    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["execute_code", "search_tools"]);

    let ran = execute(
        &client,
        "const xs: number[] = [1, 2, 3];\nconsole.log('summing');\nreturn xs.reduce((a, b) => a + b, 0);",
    )
    .await;
    assert!(!ran.is_error, "{ran:?}");
    assert_eq!(ran.result(), &json!(6));
    assert_eq!(
        ran.structured["logs"],
        json!([{"level": "log", "message": "summing"}])
    );

    let failed = execute(&client, "const a = 1;\nthrow new TypeError('bad');").await;
    assert_eq!(failed.error_kind(), "runtime");
    assert_eq!(failed.position().0, 2);

    let found = client
        .call_tool(
            CallToolRequestParams::new("search_tools")
                .with_arguments(json!({"query": ""}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert_ne!(found.is_error, Some(true));

    let resources = client.list_all_resources().await.unwrap();
    assert!(
        resources
            .iter()
            .any(|r| r.uri == "codemode://types/all.d.ts")
    );
    client
        .read_resource(ReadResourceRequestParams::new("codemode://types/all.d.ts"))
        .await
        .unwrap();
    let prompts = client.list_all_prompts().await.unwrap();
    assert_eq!(prompts[0].name, "write-a-program");

    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
}

/// The legacy transport, driven by a real legacy-SSE client: a second codemode-mcp whose
/// upstream is the first one's `/sse` endpoint.
#[tokio::test]
async fn legacy_sse_serves_the_same_tools() {
    let server = HttpServer::start(&[]);
    let dir = common::scratch_dir("legacy-sse");
    let config = common::write_config(
        &dir,
        &json!({"mcpServers": {"remote": {"url": server.url("/sse")}}}),
    );
    let outer = common::start(&["--config", &config]).await;
    let ran = outer
        .execute(
            "const inner = await tools.remote.execute_code({ code: 'console.log(\"inside\"); return 6 * 7' });\n\
             return inner;",
        )
        .await;
    assert!(!ran.is_error, "{ran:?}");
    assert_eq!(ran.result()["result"], json!(42), "{ran:?}");
    assert_eq!(ran.result()["logs"][0]["message"], json!("inside"));
    assert_eq!(
        ran.structured["calls"][0]["tool"],
        json!("remote.execute_code")
    );
}

#[tokio::test]
async fn fifty_concurrent_sessions_each_run_programs() {
    let server = HttpServer::start(&["--queue", "128"]);
    let started = Instant::now();
    let sessions = (0..50).map(|i| {
        let server = &server;
        async move {
            let client = server.client().await;
            let mut results = Vec::new();
            for j in 0..2 {
                let ran = execute(
                    &client,
                    &format!("await new Promise(r => setTimeout(r, 20));\nreturn {{ session: {i}, run: {j} }};"),
                )
                .await;
                assert!(!ran.is_error, "session {i} run {j}: {ran:?}");
                results.push(ran.result().clone());
            }
            client.cancel().await.unwrap();
            results
        }
    });
    let all = futures::future::join_all(sessions).await;
    for (i, results) in all.iter().enumerate() {
        assert_eq!(
            results,
            &[
                json!({"session": i, "run": 0}),
                json!({"session": i, "run": 1})
            ]
        );
    }
    eprintln!("50 sessions x 2 programs in {:?}", started.elapsed());
}

#[tokio::test]
async fn a_token_is_required_when_configured() {
    let dir = common::scratch_dir("auth");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret-token-of-some-length\n").unwrap();
    let server = HttpServer::start(&["--auth-token-file", token_file.to_str().unwrap()]);

    let missing = post_mcp(&server, initialize_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer realm=\"codemode-mcp\""
    );

    let wrong = initialize_as(&server, "s3cret-token-of-some-lengtX").await;
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let body = wrong.text().await.unwrap();
    assert!(!body.contains("s3cret"), "{body}");

    let sse = reqwest::get(server.url("/sse")).await.unwrap();
    assert_eq!(sse.status(), 401, "the legacy transport is guarded too");
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200, "probes need no token");

    let refused = server
        .client_with(StreamableHttpClientTransportConfig::with_uri(
            server.url("/mcp"),
        ))
        .await;
    assert!(refused.is_err(), "a client without the token is refused");
    let client = server
        .client_with(
            StreamableHttpClientTransportConfig::with_uri(server.url("/mcp"))
                .auth_header("s3cret-token-of-some-length"),
        )
        .await
        .expect("the right token is accepted");
    assert_eq!(execute(&client, "return 'in'").await.result(), &json!("in"));

    // The token may come from the environment instead of a file.
    let server = HttpServer::start_with_env(&[], &[("CODEMODE_AUTH_TOKEN", "from-the-env")]);
    let missing = post_mcp(&server, initialize_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let given = initialize_as(&server, "from-the-env").await;
    assert_eq!(given.status(), 200);
}

#[test]
fn a_public_address_without_a_token_is_refused_at_start() {
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--http", "0.0.0.0:0"])
        .env_remove("CODEMODE_AUTH_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to serve on 0.0.0.0:0 without authentication")
            && stderr.contains("--auth-token-file"),
        "{stderr}"
    );

    let dir = common::scratch_dir("empty-token");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "\n").unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--http", "0.0.0.0:0", "--auth-token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the auth token is empty"));
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let server = HttpServer::start(&[
        "--allowed-origin",
        "https://app.example.com",
        "--allowed-host",
        "mcp.example.com",
    ]);
    let post = |origin: Option<&str>, host: Option<&str>| {
        let mut request = post_mcp(&server, initialize_body().to_string());
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.send()
    };
    let evil = post(Some("http://evil.example"), None).await.unwrap();
    assert_eq!(evil.status(), 403);
    let message = evil.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("--allowed-origin"), "{message}");
    // DNS rebinding: the attacker's name resolves to loopback; the Host header tells.
    let rebound = post(None, Some("attacker.example:8080")).await.unwrap();
    assert_eq!(rebound.status(), 403);
    let sse = reqwest::Client::new()
        .get(server.url("/sse"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 403);

    for (origin, host) in [
        (Some("https://app.example.com"), None),
        (Some("http://localhost:6274"), None),
        (None, Some("mcp.example.com")),
        (None, None),
    ] {
        let ok = post(origin, host).await.unwrap();
        assert_eq!(ok.status(), 200, "origin {origin:?} host {host:?}");
    }
    let near_miss = post(Some("https://app.example.com.evil.example"), None)
        .await
        .unwrap();
    assert_eq!(near_miss.status(), 403);
}

#[tokio::test]
async fn bad_requests_get_the_right_4xx_and_the_server_keeps_serving() {
    let server = HttpServer::start(&["--max-body-kib", "1"]);
    let error_message = |body: Value| body["error"]["message"].as_str().unwrap().to_string();

    let malformed = post_mcp(&server, "{not json".into()).send().await.unwrap();
    assert_eq!(malformed.status(), 400);
    let body: Value = malformed.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!(-32700));

    let text = reqwest::Client::new()
        .post(server.url("/mcp"))
        .header("content-type", "text/plain")
        .header("accept", "application/json, text/event-stream")
        .body(initialize_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);

    let unknown = post_mcp(
        &server,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string(),
    )
    .header("mcp-session-id", "no-such-session")
    .send()
    .await
    .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(error_message(unknown.json().await.unwrap()).contains("initialize"));

    let big = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "execute_code", "arguments": {"code": "x".repeat(4096)}}});
    let oversized = post_mcp(&server, big.to_string()).send().await.unwrap();
    assert_eq!(oversized.status(), 413);

    // The legacy transport's message endpoint.
    let http = reqwest::Client::new();
    let no_session = http
        .post(server.url("/messages"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(no_session.status(), 400);
    let unknown = http
        .post(server.url("/messages?sessionId=nope"))
        .header("content-type", "application/json")
        .body(initialize_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(error_message(unknown.json().await.unwrap()).contains("GET /sse"));

    let mut stream = http.get(server.url("/sse")).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let first = String::from_utf8(stream.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    let endpoint = first
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("endpoint event")
        .to_string();
    assert!(first.contains("event: endpoint"), "{first}");
    let post = |content_type: &'static str, body: String| {
        http.post(server.url(&endpoint))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_eq!(post("text/plain", "{}".into()).await.unwrap().status(), 415);
    let malformed = post("application/json", "{oops".into()).await.unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.json::<Value>().await.unwrap()["error"]["code"],
        json!(-32700)
    );
    assert_eq!(
        post("application/json", json!({"hello": 1}).to_string())
            .await
            .unwrap()
            .status(),
        400,
        "JSON that is not a JSON-RPC message"
    );
    assert_eq!(
        post("application/json", big.to_string())
            .await
            .unwrap()
            .status(),
        413
    );
    let accepted = post("application/json", initialize_body().to_string())
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let answer = String::from_utf8(stream.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(
        answer.contains("event: message") && answer.contains("\"serverInfo\""),
        "{answer}"
    );

    let client = server.client().await;
    assert_eq!(execute(&client, "return 1 + 1").await.result(), &json!(2));
}

#[tokio::test]
async fn shutdown_lets_executions_in_flight_finish_then_exits_0() {
    let mut server = HttpServer::start(&["--shutdown-grace-secs", "30"]);
    let client = server.client().await;
    let slow = execute(
        &client,
        "await new Promise(r => setTimeout(r, 3000));\nreturn 'finished';",
    );
    // The signal comes once the execution is known to be running, not after a guess.
    let terminate = async {
        server.wait_for_executions_in_flight(1).await;
        server.signal(libc::SIGTERM);
    };
    let (ran, ()) = tokio::join!(slow, terminate);
    assert!(!ran.is_error, "{ran:?}");
    assert_eq!(ran.result(), &json!("finished"));
    let status = server.wait(common::POLL_CEILING);
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        reqwest::get(server.url("/healthz")).await.is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn shutdown_stops_executions_past_the_grace_period_with_a_clear_error() {
    // A wall clock far past the 1 s grace: only the shutdown can end the endless program.
    let mut server = HttpServer::start(&["--shutdown-grace-secs", "1", "--timeout-ms", "120000"]);
    let client = server.client().await;
    let endless = execute(&client, "while (true) {}");
    let terminate = async {
        server.wait_for_executions_in_flight(1).await;
        server.signal(libc::SIGTERM);
        Instant::now()
    };
    let (ran, signalled) = tokio::join!(endless, terminate);
    assert_eq!(ran.error_kind(), "cancelled", "{ran:?}");
    assert!(ran.error_message().contains("shutting down"), "{ran:?}");
    // The 1 s grace, then the stop: generous for a loaded machine.
    let elapsed = signalled.elapsed();
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    let status = server.wait(common::POLL_CEILING);
    assert_eq!(status.code(), Some(0), "{}", server.log());
}

#[tokio::test]
async fn one_session_cannot_take_every_slot() {
    let server = HttpServer::start(&["--session-concurrency", "1"]);
    let greedy = server.client().await;
    let other = server.client().await;
    let long = execute(
        &greedy,
        "await new Promise(r => setTimeout(r, 5000)); return 'long';",
    );
    // Once the long run holds the session's one slot (it is in flight), and long before
    // it ends.
    let second = async {
        server.wait_for_executions_in_flight(1).await;
        let refused = execute(&greedy, "return 'second'").await;
        let elsewhere = execute(&other, "return 'other session'").await;
        (refused, elsewhere)
    };
    let (long, (refused, elsewhere)) = tokio::join!(long, second);
    assert_eq!(long.result(), &json!("long"));
    assert_eq!(refused.error_kind(), "busy", "{refused:?}");
    assert!(refused.error_message().contains("session"), "{refused:?}");
    assert_eq!(elsewhere.result(), &json!("other session"));
    assert_eq!(
        execute(&greedy, "return 'again'").await.result(),
        &json!("again")
    );
}

#[tokio::test]
async fn idle_sessions_expire_and_the_session_cap_holds() {
    // 3 s idle: the two sessions stay open, with seconds to spare, while the cap is checked.
    let server = HttpServer::start(&["--session-idle-secs", "3", "--max-sessions", "2"]);
    let opened = post_mcp(&server, initialize_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 200);
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    drop(opened);
    let second = server.client().await;

    let third = post_mcp(&server, initialize_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 503, "past --max-sessions");
    let body: Value = third.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-sessions")
    );

    // Every request to the session restarts its idle clock, so each look comes a second
    // past the 3 s idle time; at most 30 s of looks.
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(4)).await;
        // A session still open may never answer this uninitialized request: not a hang.
        let status = post_mcp(
            &server,
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string(),
        )
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map(|answer| answer.status());
        if status.as_ref().is_ok_and(|status| *status == 404) {
            break;
        }
        assert!(
            started.elapsed() < common::POLL_CEILING,
            "an idle session is closed: still {status:?}"
        );
    }
    drop(second);
    let fresh = server.client().await;
    assert_eq!(
        execute(&fresh, "return 'new'").await.result(),
        &json!("new")
    );
}

#[tokio::test]
async fn stateless_mode_serves_without_sessions() {
    let server = HttpServer::start(&["--stateless"]);
    let init = post_mcp(&server, initialize_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
    assert!(!init.headers().contains_key("mcp-session-id"));

    let list = post_mcp(
        &server,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string(),
    )
    .header("mcp-protocol-version", "2025-06-18")
    .send()
    .await
    .unwrap();
    assert_eq!(list.status(), 200);
    let text = list.text().await.unwrap();
    assert!(text.contains("execute_code"), "{text}");

    let client = server.client().await;
    assert_eq!(
        execute(&client, "return 'stateless'").await.result(),
        &json!("stateless")
    );
}

/// A stateless server issues no session ids, so an `Mcp-Session-Id` a legacy request sends
/// is only the client's word: two clients sending the same one do not share a `state.*`
/// store; each run gets a handle of its own instead.
#[tokio::test]
async fn stateless_mode_gives_a_client_chosen_session_id_no_store() {
    let dir = common::scratch_dir("stateless-state");
    let config = common::write_config(&dir, &json!({"codemode": {"state": {"enabled": true}}}));
    let server = HttpServer::start(&["--config", &config, "--stateless"]);
    // Both requests send the same made-up session id, as two clients might.
    async fn call(server: &HttpServer, id: u32, code: &str) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "execute_code", "arguments": {"code": code}}});
        post_mcp(server, body.to_string())
            .header("mcp-protocol-version", "2025-06-18")
            .header("mcp-session-id", "everyone-picks-this")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
    let stored = call(
        &server,
        1,
        "await tools.state.set({ key: 'secret', value: 'alice' }); return 1;",
    )
    .await;
    let handle = stored["result"]["structuredContent"]["state"].as_str();
    assert!(
        handle.is_some_and(|h| h.starts_with("cms_")),
        "a run that stored names its own handle: {stored}"
    );
    let read = call(
        &server,
        2,
        "return await tools.state.get({ key: 'secret' });",
    )
    .await;
    assert_eq!(
        read["result"]["structuredContent"]["result"],
        Value::Null,
        "another client sending the same Mcp-Session-Id reads nothing: {read}"
    );
}

/// Without `--auth-token` nobody is checked, so an `Authorization` header a modern request
/// sends is the client's word and names no owner: a handle alone names its store, whatever
/// header each request carries (were the header taken as the owner, a client could pose as
/// any principal by naming its token).
#[tokio::test]
async fn an_unchecked_authorization_header_names_no_owner() {
    let dir = common::scratch_dir("unchecked-owner");
    let config = common::write_config(&dir, &json!({"codemode": {"state": {"enabled": true}}}));
    let server = HttpServer::start(&["--config", &config]);
    let run = |id, code: &str, state: Option<&str>, token: &str| {
        let mut arguments = json!({"code": code});
        if let Some(state) = state {
            arguments["state"] = json!(state);
        }
        common::http::post_modern(
            &server,
            id,
            "tools/call",
            json!({"name": "execute_code", "arguments": arguments}),
        )
        .header("authorization", format!("Bearer {token}"))
        .send()
    };
    let stored = common::http::answer_of(
        run(
            1,
            "await tools.state.set({ key: 'k', value: 'v' }); return 1;",
            None,
            "alice",
        )
        .await
        .unwrap(),
    )
    .await;
    let handle = stored["result"]["structuredContent"]["state"]
        .as_str()
        .unwrap_or_else(|| panic!("a handle: {stored}"))
        .to_string();
    let read = common::http::answer_of(
        run(
            2,
            "return await tools.state.get({ key: 'k' });",
            Some(&handle),
            "bob",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        read["result"]["structuredContent"]["result"],
        json!("v"),
        "the handle names the store, not the unchecked header: {read}"
    );
}

/// With `codemode.state.path` a handle outlives a restart: the database keeps the stores and
/// the key their handles are signed with. Without a path both end with the process.
#[tokio::test]
async fn a_state_handle_outlives_a_restart_with_a_state_database() {
    let dir = common::scratch_dir("handle-restart");
    let run = |server: &HttpServer, id, code: &str, state: Option<&str>| {
        let mut arguments = json!({"code": code});
        if let Some(state) = state {
            arguments["state"] = json!(state);
        }
        common::http::post_modern(
            server,
            id,
            "tools/call",
            json!({"name": "execute_code", "arguments": arguments}),
        )
        .send()
    };
    for (persisted, config) in [
        (
            true,
            json!({"codemode": {"state": {"enabled": true, "path": dir.join("state.db")}}}),
        ),
        (false, json!({"codemode": {"state": {"enabled": true}}})),
    ] {
        let config = common::write_config(&dir, &config);
        let server = HttpServer::start(&["--config", &config]);
        let stored = common::http::answer_of(
            run(
                &server,
                1,
                "await tools.state.set({ key: 'k', value: 'kept' }); return 1;",
                None,
            )
            .await
            .unwrap(),
        )
        .await;
        let handle = stored["result"]["structuredContent"]["state"]
            .as_str()
            .unwrap_or_else(|| panic!("a handle: {stored}"))
            .to_string();
        drop(server);
        let restarted = HttpServer::start(&["--config", &config]);
        let read = common::http::answer_of(
            run(
                &restarted,
                2,
                "return await tools.state.get({ key: 'k' });",
                Some(&handle),
            )
            .await
            .unwrap(),
        )
        .await;
        if persisted {
            assert_eq!(
                read["result"]["structuredContent"]["result"],
                json!("kept"),
                "the handle opens its store after the restart: {read}"
            );
        } else {
            let text = read["result"]["content"][0]["text"]
                .as_str()
                .unwrap_or_default();
            assert!(
                text.contains("not a state handle this server issued"),
                "in memory, the handle ends with the process: {read}"
            );
        }
    }
}

/// A config with the toy upstream, whose `add` the policy asks the user to confirm.
fn confirming_toy(dir: &std::path::Path) -> String {
    common::write_config(
        dir,
        &json!({
            "mcpServers": { "toy": common::toy() },
            "codemode": { "policy": { "rules": [{ "tools": "toy.add", "action": "confirm" }] } }
        }),
    )
}

/// `execute_code` of `code` from a 2026-07-28 client that declares elicitation; with
/// `state`, the retry of that `requestState` answering yes. Its JSON-RPC answer.
async fn modern_execute(server: &HttpServer, id: u32, code: &str, state: Option<&str>) -> Value {
    modern_call(server, id, json!({"code": code}), state).await
}

/// [`modern_execute`] with `arguments` of execute_code's own.
async fn modern_call(server: &HttpServer, id: u32, arguments: Value, state: Option<&str>) -> Value {
    let mut params = json!({"name": "execute_code", "arguments": arguments});
    if let Some(state) = state {
        params["requestState"] = json!(state);
        params["inputResponses"] =
            json!({"confirm": {"action": "accept", "content": {"confirm": true}}});
    }
    let request = common::http::post_modern_with(
        server,
        id,
        "tools/call",
        params,
        json!({"elicitation": {}}),
    );
    common::http::answer_of(request.send().await.unwrap()).await
}

/// The first leg of an up-front confirmation is audited as what it is, a run waiting for the
/// user (`input_required`), not as a policy refusal that the anomaly flags and metrics would
/// count against the client.
#[tokio::test]
async fn the_first_leg_of_a_confirmation_is_audited_as_asking() {
    let dir = common::scratch_dir("first-leg-audit");
    let config = confirming_toy(&dir);
    let log = dir.join("audit.jsonl");
    let server = HttpServer::start(&["--config", &config, "--audit-log", log.to_str().unwrap()]);
    let first = modern_execute(
        &server,
        1,
        "return await tools.toy.add({ a: 1, b: 2 });",
        None,
    )
    .await;
    assert_eq!(
        first["result"]["resultType"],
        json!("input_required"),
        "{first}"
    );
    let audit = std::fs::read_to_string(&log).unwrap();
    assert!(
        audit.contains(r#""errorKind":"input_required""#)
            && !audit.contains(r#""errorKind":"policy""#),
        "{audit}"
    );
}

/// Parked runs hold execution slots, so they may never hold them all: past concurrency - 1
/// parked, a further mid-run question is refused (kind `policy`, saying why), and plain
/// programs still run.
#[tokio::test]
async fn parked_runs_never_take_every_slot() {
    let dir = common::scratch_dir("parked-cap");
    let config = confirming_toy(&dir);
    let server = HttpServer::start(&["--config", &config, "--concurrency", "2"]);
    let computed = "const name = 'add';\nreturn await tools.toy[name]({ a: 1, b: 2 });";
    let first = modern_execute(&server, 1, computed, None).await;
    let state = first["result"]["requestState"]
        .as_str()
        .unwrap_or_else(|| panic!("the first run parks: {first}"))
        .to_string();
    let second = modern_execute(&server, 2, computed, None).await;
    assert_eq!(
        second["result"]["structuredContent"]["error"]["kind"],
        json!("policy"),
        "{second}"
    );
    assert!(
        second["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("already wait")),
        "{second}"
    );
    let plain = modern_execute(&server, 3, "return 1", None).await;
    assert_eq!(
        plain["result"]["structuredContent"]["result"],
        json!(1),
        "{plain}"
    );
    let answered = modern_execute(&server, 4, computed, Some(&state)).await;
    assert_eq!(
        answered["result"]["structuredContent"]["result"],
        json!({"sum": 3}),
        "{answered}"
    );
}

/// A run parked at a mid-run confirmation lives only in the server that asked: the retry
/// reaching that server restarted is told so and to run the program again, and nothing of
/// the run is guessed at.
#[tokio::test]
async fn a_parked_run_does_not_survive_a_restart_and_the_retry_says_so() {
    let dir = common::scratch_dir("parked-restart");
    let config = confirming_toy(&dir);
    let code = "const name = 'add';\nreturn await tools.toy[name]({ a: 1, b: 2 });";
    let server = HttpServer::start(&["--config", &config]);
    let first = modern_execute(&server, 1, code, None).await;
    assert_eq!(
        first["result"]["resultType"],
        json!("input_required"),
        "{first}"
    );
    let state = first["result"]["requestState"]
        .as_str()
        .unwrap_or_else(|| panic!("a requestState: {first}"))
        .to_string();
    drop(server);
    let restarted = HttpServer::start(&["--config", &config]);
    let retry = modern_execute(&restarted, 2, code, Some(&state)).await;
    let text = retry["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(retry["result"]["isError"], json!(true), "{retry}");
    assert!(
        text.contains("restarted") && text.contains("Run the program again"),
        "the retry is told the run is gone and what to do: {retry}"
    );
}

/// Several tokens are several principals: what one token's clients keep (a store, a task,
/// a question waiting for its answer) is another token's to ask about only as something
/// unknown, whatever handle, task id or requestState it copies; and only the operator's
/// token (the first) opens the console and the metrics.
#[tokio::test]
async fn each_token_is_a_principal_of_its_own() {
    let dir = common::scratch_dir("two-tokens");
    let config = common::write_config(
        &dir,
        &json!({
            "mcpServers": { "toy": common::toy() },
            "codemode": {
                "state": { "enabled": true },
                "policy": { "rules": [{ "tools": "toy.add", "action": "confirm" }] }
            }
        }),
    );
    let (alice, bob) = (
        "alice-token-long-enough-0001",
        "bob-token-long-enough-00002",
    );
    let server = HttpServer::start_with_token(
        &dir,
        &format!("# the operator first\n{alice}\n\n{bob}"),
        &["--config", &config],
    );
    let capabilities =
        json!({"elicitation": {}, "extensions": {"io.modelcontextprotocol/tasks": {}}});
    let send = |token: &str, id, method: &str, params: Value| {
        common::http::post_modern_with(&server, id, method, params, capabilities.clone())
            .bearer_auth(token)
            .send()
    };
    let run = |token: &'static str, code: &'static str, state: Option<String>| {
        let mut arguments = json!({"code": code});
        if let Some(state) = state {
            arguments["state"] = json!(state);
        }
        // Without the tasks extension: a plain call.
        common::http::post_modern_with(
            &server,
            1,
            "tools/call",
            json!({"name": "execute_code", "arguments": arguments}),
            json!({"elicitation": {}}),
        )
        .bearer_auth(token)
        .send()
    };
    let stored = common::http::answer_of(
        run(
            alice,
            "await tools.state.set({ key: 'k', value: 'alice' }); return 1;",
            None,
        )
        .await
        .unwrap(),
    )
    .await;
    let handle = stored["result"]["structuredContent"]["state"]
        .as_str()
        .unwrap_or_else(|| panic!("a handle: {stored}"))
        .to_string();
    let get = "return await tools.state.get({ key: 'k' });";
    let mine = common::http::answer_of(run(alice, get, Some(handle.clone())).await.unwrap()).await;
    assert_eq!(
        mine["result"]["structuredContent"]["result"],
        json!("alice"),
        "{mine}"
    );
    let copied = common::http::answer_of(run(bob, get, Some(handle)).await.unwrap()).await;
    assert_eq!(
        copied["result"]["structuredContent"]["result"],
        Value::Null,
        "a handle copied to another token opens an empty store: {copied}"
    );

    let started = common::http::answer_of(
        send(
            alice,
            2,
            "tools/call",
            json!({"name": "execute_code",
            "arguments": {"code": "await new Promise(r => setTimeout(r, 200)); return 1;"}}),
        )
        .await
        .unwrap(),
    )
    .await;
    let task = started["result"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("a task: {started}"))
        .to_string();
    let theirs = common::http::answer_of(
        send(bob, 3, "tasks/get", json!({"taskId": task}))
            .await
            .unwrap(),
    )
    .await;
    let none = common::http::answer_of(
        send(
            bob,
            3,
            "tasks/get",
            json!({"taskId": "00000000-0000-4000-8000-000000000000"}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        theirs["error"]["message"]
            .as_str()
            .map(|m| m.replace(&task, "ID")),
        none["error"]["message"]
            .as_str()
            .map(|m| m.replace("00000000-0000-4000-8000-000000000000", "ID")),
        "another token's task is answered as one nobody issued: {theirs}"
    );
    let own = common::http::answer_of(
        send(alice, 4, "tasks/get", json!({"taskId": task}))
            .await
            .unwrap(),
    )
    .await;
    assert!(own["result"]["status"].is_string(), "{own}");

    let add = "return await tools.toy.add({ a: 1, b: 2 });";
    let asked = common::http::answer_of(run(alice, add, None).await.unwrap()).await;
    let state = asked["result"]["requestState"]
        .as_str()
        .unwrap_or_else(|| panic!("a question: {asked}"))
        .to_string();
    let answer = json!({"confirm": {"action": "accept", "content": {"confirm": true}}});
    let retry = |token: &'static str| {
        common::http::post_modern_with(
            &server,
            5,
            "tools/call",
            json!({"name": "execute_code", "arguments": {"code": add},
                "requestState": state, "inputResponses": answer}),
            json!({"elicitation": {}}),
        )
        .bearer_auth(token)
        .send()
    };
    let stolen = common::http::answer_of(retry(bob).await.unwrap()).await;
    assert!(
        stolen["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("for this program and this client")),
        "another token's requestState resumes nothing: {stolen}"
    );
    let answered = common::http::answer_of(retry(alice).await.unwrap()).await;
    assert_eq!(
        answered["result"]["structuredContent"]["result"],
        json!({"sum": 3}),
        "and the owner's retry still finds the question: {answered}"
    );

    let http = reqwest::Client::new();
    for path in ["/metrics", "/console"] {
        let refused = http
            .get(server.url(path))
            .bearer_auth(bob)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{path} is the operator's");
        let allowed = http
            .get(server.url(path))
            .bearer_auth(alice)
            .send()
            .await
            .unwrap();
        assert_eq!(allowed.status(), 200, "{path} opens to the operator");
        let unknown = http
            .get(server.url(path))
            .bearer_auth("made-up")
            .send()
            .await
            .unwrap();
        assert_eq!(
            unknown.status(),
            401,
            "{path}: a token nobody issued is told no more"
        );
    }
}

/// `Mcp-Method` disagreeing with the body is refused with the spec's status and error
/// (400, -32020, SEP-2243), and the next request is served.
#[tokio::test]
async fn an_mcp_method_header_that_disagrees_with_the_body_is_refused() {
    let server = HttpServer::start(&[]);
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "execute_code", "arguments": {"code": "return 1"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}});
    let send = |method: &'static str, name: &'static str| {
        post_mcp(&server, body.to_string())
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method)
            .header("mcp-name", name)
            .send()
    };
    for (method, name, what) in [
        ("tools/list", "execute_code", "another method"),
        ("tools/call", "search_tools", "another tool"),
    ] {
        let refused = send(method, name).await.unwrap();
        assert_eq!(refused.status(), 400, "{what}");
        let error = common::http::answer_of(refused).await;
        assert_eq!(error["error"]["code"], json!(-32020), "{what}: {error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("does not match")),
            "{what}: the message says what disagrees: {error}"
        );
    }
    let served = common::http::answer_of(send("tools/call", "execute_code").await.unwrap()).await;
    assert_eq!(
        served["result"]["structuredContent"]["result"],
        json!(1),
        "the server keeps serving: {served}"
    );
}

/// Upstream tools reach HTTP sessions as they reach stdio ones, and so does
/// `notifications/tools/list_changed` (on the session's GET stream).
#[tokio::test]
async fn upstream_tools_and_their_changes_reach_http_sessions() {
    use common::Watcher;
    use rmcp::ServiceExt;

    let dir = common::scratch_dir("http-upstream");
    let config = common::write_config(&dir, &json!({"mcpServers": {"toy": common::toy()}}));
    let server = HttpServer::start(&["--config", &config]);
    let (tx, mut changed) = tokio::sync::mpsc::unbounded_channel();
    let client = Watcher(tx)
        .serve(rmcp::transport::StreamableHttpClientTransport::from_uri(
            server.url("/mcp"),
        ))
        .await
        .unwrap();
    let sum = execute(&client, "return await tools.toy.add({ a: 2, b: 3 });").await;
    assert_eq!(sum.result(), &json!({"sum": 5}), "{sum:?}");
    let grown = execute(&client, "return await tools.toy.grow();").await;
    assert!(!grown.is_error, "{grown:?}");
    tokio::time::timeout(common::POLL_CEILING, changed.recv())
        .await
        .expect("the HTTP session got notifications/tools/list_changed")
        .unwrap();
}

/// Shutdown waits for requests in flight on the legacy transport too, where the answer
/// travels on the SSE stream, not on the POST.
#[tokio::test]
async fn shutdown_waits_for_legacy_sse_requests_in_flight() {
    let mut server = HttpServer::start(&[]);
    let http = reqwest::Client::new();
    let mut stream = http.get(server.url("/sse")).send().await.unwrap();
    let mut received = String::new();
    while !received.contains("event: endpoint") {
        received.push_str(&String::from_utf8_lossy(
            &stream.chunk().await.unwrap().unwrap(),
        ));
    }
    let endpoint = received
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap()
        .to_string();
    let post = |message: Value| {
        http.post(server.url(&endpoint))
            .header("content-type", "application/json")
            .body(message.to_string())
            .send()
    };
    assert_eq!(post(initialize_body()).await.unwrap().status(), 202);
    post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .unwrap();
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "execute_code",
        "arguments": {"code": "await new Promise(r => setTimeout(r, 3000)); return 'finished';"}
    }});
    assert_eq!(post(call).await.unwrap().status(), 202);
    // The signal comes once the execution is known to be running.
    server.wait_for_executions_in_flight(1).await;
    server.signal(libc::SIGTERM);
    let answer = tokio::time::timeout(common::POLL_CEILING, async {
        loop {
            let Some(chunk) = stream.chunk().await.unwrap() else {
                return received;
            };
            received.push_str(&String::from_utf8_lossy(&chunk));
            if received.contains("\"id\":2") {
                return received;
            }
        }
    })
    .await
    .expect("the answer arrived");
    assert!(answer.contains("\"result\":\"finished\""), "{answer}");
    assert_eq!(server.wait(common::POLL_CEILING).code(), Some(0));
}

/// Bodies up to `--max-body-kib` (4 MiB by default) pass on both transports.
#[tokio::test]
async fn large_programs_up_to_the_body_limit_pass() {
    let server = HttpServer::start(&[]);
    let padding = "x".repeat(3 << 20);
    let client = server.client().await;
    let ran = execute(&client, &format!("// {padding}\nreturn 'big';")).await;
    assert_eq!(ran.result(), &json!("big"), "{ran:?}");

    let http = reqwest::Client::new();
    let mut stream = http.get(server.url("/sse")).send().await.unwrap();
    let first = String::from_utf8(stream.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    let endpoint = first
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap()
        .to_string();
    let post = |size: usize| {
        let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            "name": "execute_code", "arguments": {"code": format!("// {}\nreturn 1", "x".repeat(size))}
        }});
        http.post(server.url(&endpoint))
            .header("content-type", "application/json")
            .body(call.to_string())
            .send()
    };
    assert_eq!(post(3 << 20).await.unwrap().status(), 202);
    assert_eq!(post(5 << 20).await.unwrap().status(), 413);
}

/// A client's cancellation (`notifications/cancelled`, sent by rmcp when the call's
/// future is dropped) stops the isolate at once, even one waiting on a timer.
#[tokio::test]
async fn a_cancelled_request_frees_its_slot_at_once() {
    let server = HttpServer::start(&["--concurrency", "1", "--queue", "0"]);
    let client = server.client().await;
    // Dropped once the program is running, so the cancellation cannot overtake the call.
    let dropped = tokio::select! {
        ran = execute(
            &client,
            "await new Promise(r => setTimeout(r, 20000)); return 'late';",
        ) => Some(ran),
        () = server.wait_for_executions_in_flight(1) => None,
    };
    assert!(
        dropped.is_none(),
        "the sleeping program cannot have answered: {dropped:?}"
    );
    common::assert_slot_frees(|| execute(&client, "return 'slot free'")).await;
}

/// A legacy session is its opener's: over streamable HTTP and legacy SSE alike, another
/// token holding the session's id is answered as if the id never existed (whatever it
/// sends: a call, the stream, the session's end), and the opener's session goes on.
/// Over legacy SSE the handler sees the principal of each POST, so a task started there
/// belongs to the token, as over `/mcp`.
#[tokio::test]
async fn a_legacy_session_is_its_openers_alone() {
    let dir = common::scratch_dir("session-binding");
    let config = common::write_config(&dir, &json!({"codemode": {"state": {"enabled": true}}}));
    let (alice, bob) = (
        "alice-token-long-enough-0001",
        "bob-token-long-enough-00002",
    );
    let server =
        HttpServer::start_with_token(&dir, &format!("{alice}\n{bob}"), &["--config", &config]);
    let call = |id: u32, code: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "execute_code", "arguments": {"code": code}}})
    };
    let in_session = |token: &str, session: &str, body: &Value| {
        post_mcp(&server, body.to_string())
            .bearer_auth(token)
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18")
            .send()
    };
    let opened = initialize_as(&server, alice).await;
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    drop(opened);
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    in_session(alice, &session, &initialized).await.unwrap();
    let set = call(
        2,
        "await tools.state.set({ key: 'k', value: 'alice' }); return 1;",
    );
    let stored = common::http::answer_of(in_session(alice, &session, &set).await.unwrap()).await;
    assert_eq!(stored["result"]["isError"], json!(false), "{stored}");

    let get = call(3, "return await tools.state.get({ key: 'k' });");
    let refusal = |response: reqwest::Response| async move {
        (response.status(), response.text().await.unwrap())
    };
    let made_up = refusal(
        in_session(bob, "0123456789abcdef0123456789abcdef", &get)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(made_up.0, 404, "{made_up:?}");
    let stolen = refusal(in_session(bob, &session, &get).await.unwrap()).await;
    assert_eq!(
        stolen, made_up,
        "another token's session is one that never existed"
    );
    // Paths below /mcp reach the same transport: the same refusal there.
    for below in ["/mcp/", "/mcp/x"] {
        let sideways = reqwest::Client::new()
            .post(server.url(below))
            .bearer_auth(bob)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .body(get.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(refusal(sideways).await, made_up, "{below}");
    }
    let verb = |method: reqwest::Method, session: &str| {
        reqwest::Client::new()
            .request(method, server.url("/mcp"))
            .bearer_auth(bob)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18")
            .send()
    };
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let made_up = refusal(
            verb(method.clone(), "0123456789abcdef0123456789abcdef")
                .await
                .unwrap(),
        )
        .await;
        let stolen = refusal(verb(method.clone(), &session).await.unwrap()).await;
        assert_eq!(stolen, made_up, "{method} of another token's session");
    }
    let hers = common::http::answer_of(in_session(alice, &session, &get).await.unwrap()).await;
    assert_eq!(
        hers["result"]["structuredContent"]["result"],
        json!("alice"),
        "the opener's session and store are untouched: {hers}"
    );

    // Legacy SSE.
    let mut sse = common::http::SseSession::open(&server, Some(alice)).await;
    let mut initialize = initialize_body();
    initialize["params"]["capabilities"] =
        json!({"extensions": {"io.modelcontextprotocol/tasks": {}}});
    let made_up_post = reqwest::Client::new()
        .post(server.url("/messages?sessionId=0123456789abcdef0123456789abcdef"))
        .bearer_auth(bob)
        .header("content-type", "application/json")
        .body(initialize.to_string())
        .send()
        .await
        .unwrap();
    let made_up = refusal(made_up_post).await;
    assert_eq!(made_up.0, 404, "{made_up:?}");
    let stolen = refusal(
        sse.post(&server, Some(bob), &initialize)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        stolen.1.replace(
            sse.endpoint.rsplit('=').next().unwrap(),
            "0123456789abcdef0123456789abcdef"
        ),
        made_up.1,
        "another token's SSE session is one that never existed"
    );
    assert_eq!(stolen.0, made_up.0);
    let sent = sse
        .post(&server, Some(alice), &initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    sse.answer(1).await;
    sse.post(&server, Some(alice), &initialized)
        .send()
        .await
        .unwrap();
    sse.post(
        &server,
        Some(alice),
        &call(
            2,
            "await new Promise(r => setTimeout(r, 100)); return 'sse';",
        ),
    )
    .send()
    .await
    .unwrap();
    let started = sse.answer(2).await;
    let task = started["result"]["task"]["taskId"]
        .as_str()
        .or_else(|| started["result"]["taskId"].as_str())
        .unwrap_or_else(|| panic!("a task: {started}"))
        .to_string();
    let poll = |token: &str| {
        common::http::post_modern_with(
            &server,
            9,
            "tasks/get",
            json!({"taskId": task}),
            json!({"extensions": {"io.modelcontextprotocol/tasks": {}}}),
        )
        .bearer_auth(token)
        .send()
    };
    let own = common::http::answer_of(poll(alice).await.unwrap()).await;
    assert!(
        own["result"]["status"].is_string(),
        "a task started over SSE is the token's, polled over /mcp: {own}"
    );
    let theirs = common::http::answer_of(poll(bob).await.unwrap()).await;
    assert!(theirs["error"].is_object(), "{theirs}");
}

/// `execute_code` of `code` with a `timeoutMs` (see [`modern_call`]).
async fn modern_execute_within(
    server: &HttpServer,
    id: u32,
    code: &str,
    timeout_ms: u64,
    state: Option<&str>,
) -> Value {
    modern_call(
        server,
        id,
        json!({"code": code, "timeoutMs": timeout_ms}),
        state,
    )
    .await
}

/// A parked run's own clock stands still while the user is asked: the user has the
/// approval timeout to answer, however short the program's `timeoutMs`. It does not buy
/// CPU: a program that computes on timers while parked is stopped once it has used its
/// time limit in CPU time. Both with a worker process per program and in process.
#[tokio::test]
async fn a_parked_runs_clock_stands_still_but_its_cpu_does_not() {
    for isolation in ["process", "none"] {
        let dir = common::scratch_dir(&format!("parked-clock-{isolation}"));
        let config = confirming_toy(&dir);
        let log = dir.join("audit.jsonl");
        let server = HttpServer::start(&[
            "--config",
            &config,
            "--isolation",
            isolation,
            "--audit-log",
            log.to_str().unwrap(),
        ]);
        let state_of = |answer: &Value| {
            assert_eq!(
                answer["result"]["resultType"],
                json!("input_required"),
                "{isolation}: {answer}"
            );
            answer["result"]["requestState"]
                .as_str()
                .unwrap_or_else(|| panic!("a requestState: {answer}"))
                .to_string()
        };

        let idle = "const name = 'add';\nreturn await tools.toy[name]({ a: 1, b: 2 });";
        let first = modern_execute_within(&server, 1, idle, 1000, None).await;
        let state = state_of(&first);
        // Twice the program's time limit, spent waiting for the user.
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let answered = modern_execute_within(&server, 2, idle, 1000, Some(&state)).await;
        assert_eq!(
            answered["result"]["structuredContent"]["result"],
            json!({"sum": 3}),
            "{isolation}: the run waited past its timeoutMs for the answer, then ran on: {answered}"
        );

        let burning = "let spins = 0;\n\
            (async () => { for (;;) { for (let i = 0; i < 100000; i++) spins++; await new Promise(r => setTimeout(r, 0)); } })();\n\
            const name = 'add';\n\
            return await tools.toy[name]({ a: 1, b: 2 });";
        let first = modern_execute_within(&server, 3, burning, 1000, None).await;
        let state = state_of(&first);
        // Ends on CPU time used, not on time waited: nobody answers.
        common::wait_for("the burning run's audit record", || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|audit| audit.contains(r#""errorKind":"timeout""#))
        })
        .await;
        let retry = modern_execute_within(&server, 4, burning, 1000, Some(&state)).await;
        let text = retry["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            retry["result"]["isError"] == json!(true) && text.contains("time limit"),
            "{isolation}: a parked run computing on timers is stopped at its time limit in CPU time: {retry}"
        );
    }
}
