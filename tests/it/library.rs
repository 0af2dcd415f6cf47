//! The library API as an embedding program uses it: built-in tools from Rust, progress,
//! cancellation, worker processes, and the errors of a bad setup.

use crate::common;

use std::time::{Duration, Instant};

use codemode_mcp::{
    BuiltinTool, CodeMode, EmbedError, config::Config, executor::RunOptions, isolation::Isolation,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[derive(Deserialize, JsonSchema)]
struct Nap {
    /// Milliseconds.
    ms: u64,
}

fn nap_tool() -> BuiltinTool {
    BuiltinTool::new(
        "nap",
        "Sleeps, then answers with what it slept",
        |nap: Nap| async move {
            tokio::time::sleep(Duration::from_millis(nap.ms)).await;
            Ok(json!({ "slept": nap.ms }))
        },
    )
}

#[tokio::test]
async fn progress_reports_each_tool_call_as_it_ends() {
    let codemode = CodeMode::builder()
        .tool("host", nap_tool())
        .build()
        .await
        .unwrap();
    let (sender, mut calls) = tokio::sync::mpsc::unbounded_channel();
    let run = codemode
        .execute_with(
            "for (const ms of [1, 2, 3]) await tools.host.nap({ ms });\nreturn 'done';",
            RunOptions {
                progress: Some(sender),
                ..RunOptions::default()
            },
        )
        .await;
    assert_eq!(run.outcome.result.unwrap().json, "\"done\"");
    let mut seen = Vec::new();
    while let Ok(call) = calls.try_recv() {
        assert!(call.ok);
        seen.push(call.tool);
    }
    assert_eq!(seen, ["host.nap", "host.nap", "host.nap"]);
}

#[tokio::test]
async fn a_cancel_token_ends_the_run_at_once() {
    let codemode = CodeMode::builder()
        .tool("host", nap_tool())
        .build()
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let (run, ()) = tokio::join!(
        codemode.execute_with(
            "await tools.host.nap({ ms: 20000 });\nreturn 'late';",
            RunOptions {
                cancel: Some(cancel.clone()),
                ..RunOptions::default()
            },
        ),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            cancel.cancel();
        }
    );
    let error = run.outcome.result.unwrap_err();
    assert_eq!(error.kind.as_str(), "cancelled", "{error:?}");
    // Far short of the 20 s nap: the cancel ended it, however loaded the machine.
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

/// A built-in tool is answered in the host even when programs run in worker processes.
#[tokio::test]
async fn builtin_tools_are_answered_by_the_host_of_a_worker() {
    let codemode = CodeMode::builder()
        .tool("host", nap_tool())
        .isolation(Isolation::Process)
        .worker_program(common::BIN)
        .build()
        .await
        .unwrap();
    assert!(codemode.lockdown().is_some_and(|report| report.complete()));
    let run = codemode
        .execute("return await tools.host.nap({ ms: 5 });")
        .await;
    assert_eq!(run.outcome.result.unwrap().json, r#"{"slept":5}"#);
    let invalid = codemode
        .execute("return await tools.host.nap({ ms: 'x' });")
        .await;
    let error = invalid.outcome.result.unwrap_err();
    assert_eq!(error.kind.as_str(), "tool");
    assert_eq!(error.schema_path.as_deref(), Some("/properties/ms/type"));
}

#[tokio::test]
async fn a_builtin_namespace_may_not_take_an_upstream_name() {
    let config = Config::parse(
        &json!({"mcpServers": {"host": {"command": "true"}}}).to_string(),
        "test",
    )
    .unwrap();
    let refused = CodeMode::builder()
        .config(config)
        .tool("host", nap_tool())
        .build()
        .await;
    assert!(matches!(refused, Err(EmbedError::NamespaceTaken(name)) if name == "host"));
}

#[derive(Deserialize, JsonSchema)]
struct Big {
    bytes: usize,
}

/// Budgets beside the total call count: calls of one tool, bytes of results received.
#[tokio::test]
async fn per_tool_and_received_byte_budgets_end_the_run_with_kind_budget() {
    let codemode = CodeMode::builder()
        .limits(codemode_mcp::config::LimitSettings {
            calls_per_tool: Some(2),
            received_kib: Some(1),
            ..Default::default()
        })
        .tool("host", nap_tool())
        .tool(
            "host",
            BuiltinTool::new("big", "Answers `bytes` bytes", |big: Big| async move {
                Ok(json!({ "data": "x".repeat(big.bytes) }))
            }),
        )
        .build()
        .await
        .unwrap();
    let naps = codemode
        .execute("for (let i = 0; i < 3; i++) await tools.host.nap({ ms: 1 });\nreturn 'slept';")
        .await;
    let error = naps.outcome.result.unwrap_err();
    assert_eq!(error.kind.as_str(), "budget", "{error:?}");
    assert!(error.message.contains("--max-calls-per-tool"), "{error:?}");
    assert_eq!(naps.calls.iter().filter(|c| c.ok).count(), 2);

    let big = codemode
        .execute("const a = await tools.host.big({ bytes: 600 });\nconst b = await tools.host.big({ bytes: 600 });\nreturn a.data.length + b.data.length;")
        .await;
    let error = big.outcome.result.unwrap_err();
    assert_eq!(error.kind.as_str(), "budget", "{error:?}");
    assert!(error.message.contains("--max-received-kib"), "{error:?}");
    assert_eq!(error.position.map(|p| p.line), Some(2), "{error:?}");
}
