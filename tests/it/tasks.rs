//! `execute_code` as an MCP task (the tasks extension), through the real binary and rmcp's
//! client: a task started, polled, completed past the plain wall clock; one cancelled;
//! one timed out on the task's own clock; the per-session cap; tool calls reported as the
//! task's status; a streamable HTTP session; and clients without the extension (and
//! stateless HTTP) keeping the plain behaviour.

use crate::common;

use std::time::{Duration, Instant};

use common::{BIN, http::HttpServer, unpack};
use rmcp::{
    RoleClient, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams,
        ClientCapabilities, ClientConfig, CreateTaskResult, DetailedTask, GetTaskParams,
        Implementation, TaskPayload, TaskStatus,
    },
    service::RunningService,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};

fn tasks_client() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::builder().enable_tasks().build(),
        Implementation::new("tasks-test", "1"),
    )
}

/// `serve` over stdio with a client that declares the tasks extension.
async fn start_tasks(args: &[&str]) -> RunningService<RoleClient, ClientConfig> {
    common::start_with(tasks_client(), args, &[]).await.0
}

async fn call(
    client: &RunningService<RoleClient, ClientConfig>,
    arguments: Value,
) -> CallToolResponse {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object")
    };
    tokio::time::timeout(
        common::POLL_CEILING,
        client.call_tool_once(CallToolRequestParams::new("execute_code").with_arguments(arguments)),
    )
    .await
    .expect("execute_code answered within 30 s")
    .expect("execute_code is a response, not a protocol error")
}

fn task_of(response: CallToolResponse) -> CreateTaskResult {
    match response {
        CallToolResponse::Task(task) => task,
        other => panic!("expected a task handle, got {other:?}"),
    }
}

async fn get(client: &RunningService<RoleClient, ClientConfig>, id: &str) -> DetailedTask {
    client
        .peer()
        .get_task(GetTaskParams::new(id.to_string()))
        .await
        .expect("tasks/get")
        .task
}

/// Polls until the task is terminal (at most `limit`).
async fn settled(
    client: &RunningService<RoleClient, ClientConfig>,
    id: &str,
    limit: Duration,
) -> DetailedTask {
    let deadline = Instant::now() + limit;
    loop {
        let task = get(client, id).await;
        if task.status().is_terminal() {
            return task;
        }
        assert!(Instant::now() < deadline, "task {id} still {task:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn completed(task: &DetailedTask) -> common::Ran {
    match &task.payload {
        TaskPayload::Completed { result } => {
            let result: CallToolResult =
                serde_json::from_value(Value::Object(result.clone())).expect("a CallToolResult");
            unpack(result)
        }
        other => panic!("expected a completed task, got {other:?}"),
    }
}

fn config(dir: &std::path::Path, tasks: Value) -> String {
    common::write_config(
        dir,
        &json!({ "codemode": {
            "limits": { "timeoutMs": 300 },
            "tasks": tasks,
            "state": { "enabled": true },
        }}),
    )
}

/// Ten times the plain 300 ms wall clock of [`config`], and far inside the 20 s task clock
/// of the tests that let it finish.
const SLOW: &str = "await new Promise(r => setTimeout(r, 3000));\nreturn 6 * 7;";

#[tokio::test]
async fn a_task_runs_past_the_plain_wall_clock_and_is_polled_to_its_result() {
    let dir = common::scratch_dir("tasks-complete");
    let config = config(&dir, json!({ "timeoutMs": 20000 }));
    let log = dir.join("audit.jsonl");
    let client = start_tasks(&["--config", &config, "--audit-log", log.to_str().unwrap()]).await;
    let info = client.peer().peer_info().expect("server info");
    assert!(info.capabilities.supports_tasks(), "{info:?}");

    // The handle comes before the program ends: it says the task is still working.
    let task = task_of(call(&client, json!({ "code": SLOW })).await);
    assert_eq!(task.task.status, TaskStatus::Working, "{task:?}");
    assert!(task.task.poll_interval_ms.is_some());
    assert!(task.task.ttl_ms.is_some_and(|ttl| ttl >= 20000), "{task:?}");
    let id = task.task.task_id.clone();
    assert_eq!(get(&client, &id).await.status(), TaskStatus::Working);

    let done = settled(&client, &id, common::POLL_CEILING).await;
    let ran = completed(&done);
    assert!(!ran.is_error, "{ran:?}");
    assert_eq!(ran.result(), &json!(42));
    assert!(ran.duration_ms() >= 3000, "{ran:?}");
    // The finished task stays readable.
    assert_eq!(get(&client, &id).await.status(), TaskStatus::Completed);

    // A call's own timeoutMs still lowers the task's clock.
    let lowered = task_of(call(&client, json!({ "code": SLOW, "timeoutMs": 200 })).await);
    let done = settled(&client, &lowered.task.task_id, common::POLL_CEILING).await;
    let ran = completed(&done);
    assert!(ran.is_error);
    assert_eq!(ran.error_kind(), "timeout", "{ran:?}");

    // Bad arguments are answered at once, as a plain result naming the problem.
    match call(&client, json!({ "code": 1 })).await {
        CallToolResponse::Complete(result) => {
            assert_eq!(result.is_error, Some(true));
            let text = result.content[0].as_text().unwrap().text.clone();
            assert!(text.contains("invalid argument code"), "{text}");
        }
        other => panic!("expected a plain error, got {other:?}"),
    }
    // An unknown task is a protocol error, not a hang.
    assert!(
        client
            .peer()
            .get_task(GetTaskParams::new("no-such-task".to_string()))
            .await
            .is_err()
    );
    client.cancel().await.unwrap();
    let audit = std::fs::read_to_string(&log).unwrap();
    assert_eq!(audit.lines().count(), 2, "{audit}");
}

#[tokio::test]
async fn a_client_without_tasks_keeps_the_plain_wall_clock() {
    let dir = common::scratch_dir("tasks-plain");
    let config = config(&dir, json!({ "timeoutMs": 5000 }));
    let server = common::start(&["--config", &config]).await;
    let ran = server.execute(SLOW).await;
    assert!(ran.is_error);
    assert_eq!(ran.error_kind(), "timeout", "{ran:?}");
    server.assert_alive().await;
}

#[tokio::test]
async fn a_task_is_cancelled_and_its_program_stopped() {
    let dir = common::scratch_dir("tasks-cancel");
    let config = config(&dir, json!({ "timeoutMs": 20000 }));
    let log = dir.join("audit.jsonl");
    let client = start_tasks(&["--config", &config, "--audit-log", log.to_str().unwrap()]).await;
    let task = task_of(
        call(
            &client,
            json!({ "code": "await tools.state.set({ key: 'started', value: true });\nfor (;;) {}" }),
        )
        .await,
    );
    let id = task.task.task_id;
    // Let it start, then cancel.
    let deadline = Instant::now() + common::POLL_CEILING;
    while !get(&client, &id)
        .await
        .task
        .status_message
        .is_some_and(|m| m.contains("tools.state.set"))
    {
        assert!(Instant::now() < deadline, "the program never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client
        .peer()
        .cancel_task(CancelTaskParams::new(id.clone()))
        .await
        .expect("tasks/cancel");
    let done = settled(&client, &id, common::POLL_CEILING).await;
    assert_eq!(done.status(), TaskStatus::Cancelled, "{done:?}");

    // The isolate is gone: the server runs the next task at once, and the cancelled run is
    // in the audit log as such.
    let next = task_of(call(&client, json!({ "code": "return 1" })).await);
    let next = settled(&client, &next.task.task_id, common::POLL_CEILING).await;
    assert_eq!(completed(&next).result(), &json!(1));
    client.cancel().await.unwrap();
    // The record is written once the isolate has stopped, which may trail the status.
    common::wait_for("the cancelled run in the audit log", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|audit| audit.contains(r#""errorKind":"cancelled""#))
    })
    .await;
}

#[tokio::test]
async fn a_task_reports_its_tool_calls_and_ends_on_its_own_clock() {
    let dir = common::scratch_dir("tasks-clock");
    // The task clock (5 s, against the plain 300 ms) is the window in which the status is
    // read: long enough on a loaded machine, still ended by the clock since the program spins.
    let config = config(&dir, json!({ "timeoutMs": 5000, "maxRunning": 1 }));
    let client = start_tasks(&["--config", &config]).await;
    let task = task_of(
        call(
            &client,
            json!({ "code": "await tools.state.set({ key: 'a', value: 1 });\nawait tools.state.get({ key: 'a' });\nfor (;;) {}" }),
        )
        .await,
    );
    let id = task.task.task_id;
    // A second task while the first runs is past maxRunning: busy, nothing run.
    match call(&client, json!({ "code": "return 1" })).await {
        CallToolResponse::Complete(result) => {
            let ran = unpack(result);
            assert_eq!(ran.error_kind(), "busy", "{ran:?}");
            assert!(
                ran.error_message().contains("codemode.tasks.maxRunning"),
                "{ran:?}"
            );
        }
        other => panic!("expected busy, got {other:?}"),
    }
    let mut status = None;
    let deadline = Instant::now() + common::POLL_CEILING;
    while status.is_none() {
        let task = get(&client, &id).await;
        status = task
            .task
            .status_message
            .filter(|m| m.contains("2 tool calls") && m.contains("tools.state.get answered"));
        assert!(Instant::now() < deadline, "no status with the tool calls");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = settled(&client, &id, common::POLL_CEILING).await;
    let ran = completed(&done);
    assert_eq!(ran.error_kind(), "timeout", "{ran:?}");
    assert!(ran.error_message().contains("5000"), "{ran:?}");
    // The slot is free again.
    let next = task_of(call(&client, json!({ "code": "return 2" })).await);
    let next = settled(&client, &next.task.task_id, common::POLL_CEILING).await;
    assert_eq!(completed(&next).result(), &json!(2));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn tasks_over_streamable_http_sessions_and_not_over_stateless_http() {
    let dir = common::scratch_dir("tasks-http");
    let config = config(&dir, json!({ "timeoutMs": 20000 }));
    let server = HttpServer::start(&["--config", &config]);
    let client = tasks_client()
        .serve(StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(server.url("/mcp")),
        ))
        .await
        .expect("MCP handshake over streamable HTTP");
    let task = task_of(call(&client, json!({ "code": SLOW })).await);
    let done = settled(&client, &task.task.task_id, common::POLL_CEILING).await;
    assert_eq!(completed(&done).result(), &json!(42));
    // Another session cannot read it.
    let other = tasks_client()
        .serve(StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(server.url("/mcp")),
        ))
        .await
        .unwrap();
    assert!(
        other
            .peer()
            .get_task(GetTaskParams::new(task.task.task_id.clone()))
            .await
            .is_err()
    );

    let stateless = HttpServer::start(&["--config", &config, "--stateless"]);
    let client = tasks_client()
        .serve(StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(stateless.url("/mcp")),
        ))
        .await
        .unwrap();
    let info = client.peer().peer_info().expect("server info");
    assert!(!info.capabilities.supports_tasks(), "{info:?}");
    match call(&client, json!({ "code": "return 3" })).await {
        CallToolResponse::Complete(result) => assert_eq!(unpack(result).result(), &json!(3)),
        other => panic!("expected a plain result, got {other:?}"),
    }
}

#[tokio::test]
async fn tasks_turned_off_keep_the_plain_behaviour() {
    let dir = common::scratch_dir("tasks-off");
    let config = config(&dir, json!({ "enabled": false }));
    let client = start_tasks(&["--config", &config]).await;
    let info = client.peer().peer_info().expect("server info");
    assert!(!info.capabilities.supports_tasks(), "{info:?}");
    match call(&client, json!({ "code": "return 4" })).await {
        CallToolResponse::Complete(result) => assert_eq!(unpack(result).result(), &json!(4)),
        other => panic!("expected a plain result, got {other:?}"),
    }
    // A bad setting is refused at start with its key path.
    let bad = common::write_config(
        &dir,
        &json!({ "codemode": { "tasks": { "timeoutMs": 1 } } }),
    );
    let output = std::process::Command::new(BIN)
        .args(["serve", "--config", &bad])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("codemode.tasks.timeoutMs"), "{stderr}");
}

/// Progress keeps flowing while a program runs as a task: a client that sent a progress
/// token hears of each tool call, as with a plain call.
#[tokio::test]
async fn a_task_sends_progress_for_each_tool_call() {
    use rmcp::model::{NumberOrString, ProgressToken, RequestMetaObject};

    let dir = common::scratch_dir("tasks-progress");
    let config = config(&dir, json!({ "timeoutMs": 5000 }));
    let (listener, mut heard) = common::ProgressListener::new(tasks_client());
    let (client, _) = common::start_with(listener, &["--config", &config], &[]).await;
    let Value::Object(arguments) = json!({
        "code": "await tools.state.set({ key: 'a', value: 1 });\nawait new Promise(r => setTimeout(r, 300));\nawait tools.state.get({ key: 'a' });\nreturn 'ok';"
    }) else {
        unreachable!()
    };
    let mut params = CallToolRequestParams::new("execute_code").with_arguments(arguments);
    params.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
        NumberOrString::String("task-1".into()),
    )));
    let task = match client.call_tool_once(params).await.unwrap() {
        CallToolResponse::Task(task) => task,
        other => panic!("expected a task handle, got {other:?}"),
    };
    let mut notes = Vec::new();
    while notes.len() < 2 {
        let note = tokio::time::timeout(common::POLL_CEILING, heard.recv())
            .await
            .expect("a progress notification per tool call")
            .unwrap();
        notes.push(note);
    }
    let messages: Vec<String> = notes.iter().filter_map(|n| n.message.clone()).collect();
    assert!(
        messages[0].starts_with("tools.state.set answered"),
        "{messages:?}"
    );
    assert!(
        messages[1].starts_with("tools.state.get answered"),
        "{messages:?}"
    );
    let deadline = Instant::now() + common::POLL_CEILING;
    loop {
        let status = client
            .peer()
            .get_task(GetTaskParams::new(task.task.task_id.clone()))
            .await
            .unwrap()
            .task;
        if status.status().is_terminal() {
            assert_eq!(completed(&status).result(), &json!("ok"));
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A task does not outlive its session: when the client ends its streamable HTTP session,
/// the program is stopped (and audited as cancelled).
#[tokio::test]
async fn a_task_ends_with_its_http_session() {
    let dir = common::scratch_dir("tasks-session-end");
    let config = config(&dir, json!({ "timeoutMs": 60000 }));
    let log = dir.join("audit.jsonl");
    let server = HttpServer::start(&["--config", &config, "--audit-log", log.to_str().unwrap()]);
    let client = tasks_client()
        .serve(StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(server.url("/mcp")),
        ))
        .await
        .unwrap();
    let task = task_of(call(&client, json!({ "code": "for (;;) {}" })).await);
    assert_eq!(
        get(&client, &task.task.task_id).await.status(),
        TaskStatus::Working
    );
    client.cancel().await.unwrap();
    let deadline = Instant::now() + common::POLL_CEILING;
    loop {
        let audit = std::fs::read_to_string(&log).unwrap_or_default();
        if audit.contains(r#""errorKind":"cancelled""#) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the program outlived its session: {audit}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A request of protocol 2026-07-28 from a client declaring the tasks extension; its
/// JSON-RPC answer.
async fn modern(
    server: &HttpServer,
    id: u32,
    method: &str,
    params: Value,
    token: Option<&str>,
) -> Value {
    let mut request = common::http::post_modern_with(
        server,
        id,
        method,
        params,
        json!({ "extensions": { "io.modelcontextprotocol/tasks": {} } }),
    );
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    common::http::answer_of(request.send().await.unwrap()).await
}

/// A legacy streamable HTTP session declaring the tasks extension.
async fn legacy(
    server: &HttpServer,
    token: Option<&str>,
) -> RunningService<RoleClient, ClientConfig> {
    let mut transport = StreamableHttpClientTransportConfig::with_uri(server.url("/mcp"));
    transport.auth_header = token.map(str::to_string);
    tasks_client()
        .serve(StreamableHttpClientTransport::from_config(transport))
        .await
        .expect("MCP handshake over streamable HTTP")
}

async fn foreign(client: &RunningService<RoleClient, ClientConfig>, id: &str) -> String {
    match client
        .peer()
        .get_task(GetTaskParams::new(id.to_string()))
        .await
    {
        Ok(task) => panic!("another owner read task {id}: {task:?}"),
        Err(err) => err.to_string().replace(id, "ID"),
    }
}

/// Tasks belong to their owner, not to the session or request that started them, on both
/// eras. Without a token a legacy session owns its tasks and a modern request's task is
/// named by its id alone (each modern request has a handler of its own, yet a later one
/// polls the task); with a token, every session and request of that token owns them. A
/// task of another owner is answered exactly as an id nobody issued.
#[tokio::test]
async fn tasks_belong_to_their_owner_on_both_eras() {
    let dir = common::scratch_dir("tasks-owners");
    let config = config(&dir, json!({ "timeoutMs": 20000 }));
    let server = HttpServer::start(&["--config", &config]);
    let call_slow = json!({ "name": "execute_code", "arguments": { "code": SLOW } });

    let alice = legacy(&server, None).await;
    let hers = task_of(call(&alice, json!({ "code": SLOW })).await)
        .task
        .task_id;
    let bob = legacy(&server, None).await;
    assert_eq!(
        foreign(&bob, &hers).await,
        foreign(&bob, "00000000-0000-4000-8000-000000000000")
            .await
            .replace("00000000-0000-4000-8000-000000000000", "ID"),
        "another session's task is answered as one nobody issued"
    );
    assert!(
        bob.peer()
            .cancel_task(CancelTaskParams::new(hers.clone()))
            .await
            .is_err(),
        "nor can another session cancel it"
    );
    let looked = modern(&server, 1, "tasks/get", json!({ "taskId": hers }), None).await;
    assert_eq!(looked["error"]["code"], json!(-32602), "{looked}");

    let started = modern(&server, 2, "tools/call", call_slow.clone(), None).await;
    let id = started["result"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("a modern request gets a task: {started}"))
        .to_string();
    let deadline = Instant::now() + common::POLL_CEILING;
    let done = loop {
        let polled = modern(&server, 3, "tasks/get", json!({ "taskId": id }), None).await;
        if polled["result"]["status"] == json!("completed") {
            break polled;
        }
        assert!(
            polled["result"]["status"] == json!("working") && Instant::now() < deadline,
            "a later modern request polls it: {polled}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(done.to_string().contains("42"), "{done}");
    foreign(&alice, &id).await;
    assert_eq!(
        settled(&alice, &hers, common::POLL_CEILING).await.status(),
        TaskStatus::Completed,
        "its own session still reads it"
    );

    // One token, one principal: its sessions and requests share their tasks.
    let token = "a-token-long-enough-for-the-server";
    let guarded = HttpServer::start_with_token(&dir, token, &["--config", &config]);
    let first = legacy(&guarded, Some(token)).await;
    let theirs = task_of(call(&first, json!({ "code": SLOW })).await)
        .task
        .task_id;
    let second = legacy(&guarded, Some(token)).await;
    get(&second, &theirs).await;
    let polled = modern(
        &guarded,
        4,
        "tasks/get",
        json!({ "taskId": theirs }),
        Some(token),
    )
    .await;
    assert!(polled["result"]["status"].is_string(), "{polled}");
}

/// A task of a modern client asks its confirmations through the task's own
/// `input_required` state: `tasks/get` shows the question, `tasks/update` answers it, and
/// the program goes on from where it waited; a declined call fails the run with kind
/// `policy`. Up-front and mid-run questions alike.
#[tokio::test]
async fn a_modern_task_asks_its_confirmations_through_the_task() {
    let dir = common::scratch_dir("tasks-confirm");
    let config = common::write_config(
        &dir,
        &json!({
            "mcpServers": { "toy": common::toy() },
            "codemode": {
                "tasks": { "timeoutMs": 60000 },
                "policy": { "rules": [{ "tools": "toy.add", "action": "confirm" }] }
            }
        }),
    );
    let server = HttpServer::start(&["--config", &config]);
    let capabilities = json!({
        "extensions": { "io.modelcontextprotocol/tasks": {} },
        "elicitation": {}
    });
    let send = |id, method: &str, params: Value| {
        common::http::post_modern_with(&server, id, method, params, capabilities.clone()).send()
    };
    for (code, answer, expected) in [
        (
            "return (await tools.toy.add({ a: 1, b: 2 })).sum;",
            json!({"action": "accept", "content": {"confirm": true}}),
            r#""result":3"#,
        ),
        (
            "const name = 'add';\nreturn (await tools.toy[name]({ a: 2, b: 2 })).sum;",
            json!({"action": "accept", "content": {"confirm": true}}),
            r#""result":4"#,
        ),
        (
            "const name = 'add';\nreturn (await tools.toy[name]({ a: 2, b: 2 })).sum;",
            json!({"action": "decline"}),
            r#""kind":"policy""#,
        ),
    ] {
        let started = common::http::answer_of(
            send(
                1,
                "tools/call",
                json!({"name": "execute_code", "arguments": {"code": code}}),
            )
            .await
            .unwrap(),
        )
        .await;
        let id = started["result"]["taskId"]
            .as_str()
            .unwrap_or_else(|| panic!("a task: {started}"))
            .to_string();
        let deadline = Instant::now() + common::POLL_CEILING;
        let mut answered = false;
        let done = loop {
            let polled =
                common::http::answer_of(send(2, "tasks/get", json!({"taskId": id})).await.unwrap())
                    .await;
            let status = polled["result"]["status"].as_str().unwrap_or_default();
            if status == "completed" || status == "failed" {
                break polled;
            }
            if status == "input_required" && !answered {
                let requests = polled["result"]["inputRequests"]
                    .as_object()
                    .unwrap_or_else(|| panic!("the question: {polled}"));
                let (key, request) = requests.iter().next().unwrap();
                assert!(
                    request.to_string().contains("tools.toy.add"),
                    "the question names the tool: {request}"
                );
                let updated = common::http::answer_of(
                    send(
                        3,
                        "tasks/update",
                        json!({"taskId": id, "inputResponses": {key.clone(): answer.clone()}}),
                    )
                    .await
                    .unwrap(),
                )
                .await;
                assert!(updated.get("error").is_none(), "{updated}");
                answered = true;
            }
            assert!(Instant::now() < deadline, "task {id} still {polled}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(answered, "the task asked: {done}");
        let text = done.to_string();
        assert!(
            text.contains(expected),
            "{code}: expected {expected} in {done}"
        );
    }
}

/// A task's question nobody answers in time is taken back: the call is refused, and
/// `tasks/get` no longer shows the task as waiting for input while the program goes on.
#[tokio::test]
async fn a_task_question_nobody_answered_is_withdrawn() {
    let dir = common::scratch_dir("tasks-withdrawn");
    let config = common::write_config(
        &dir,
        &json!({
            "mcpServers": { "toy": common::toy() },
            "codemode": {
                "tasks": { "timeoutMs": 600000 },
                "policy": {
                    "rules": [{ "tools": "toy.add", "action": "confirm" }],
                    "approvalTimeoutMs": 200
                }
            }
        }),
    );
    let server = HttpServer::start(&["--config", &config]);
    let capabilities = json!({
        "extensions": { "io.modelcontextprotocol/tasks": {} },
        "elicitation": {}
    });
    let send = |id, method: &str, params: Value| {
        common::http::post_modern_with(&server, id, method, params, capabilities.clone()).send()
    };
    // Goes on, long after the refusal, until cancelled.
    let code = "const name = 'add';\n\
        try { await tools.toy[name]({ a: 1, b: 2 }); } catch (e) { console.log(e.message); }\n\
        await new Promise(r => setTimeout(r, 300000));\n\
        return 1;";
    let started = common::http::answer_of(
        send(
            1,
            "tools/call",
            json!({"name": "execute_code", "arguments": {"code": code}}),
        )
        .await
        .unwrap(),
    )
    .await;
    let id = started["result"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("a task: {started}"))
        .to_string();
    let status = || async {
        let polled =
            common::http::answer_of(send(2, "tasks/get", json!({"taskId": id})).await.unwrap())
                .await;
        polled["result"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    common::poll_until("the task's question", || async {
        (status().await == "input_required").then_some(())
    })
    .await;
    common::poll_until("the unanswered question withdrawn", || async {
        (status().await == "working").then_some(())
    })
    .await;
    let cancelled = common::http::answer_of(
        send(3, "tasks/cancel", json!({"taskId": id}))
            .await
            .unwrap(),
    )
    .await;
    assert!(cancelled.get("error").is_none(), "{cancelled}");
}
