//! rmcp's own client in the 2026-07-28 era (`server/discover`, the per-request `_meta`, no
//! handshake, no session) against the real binary over stdio: programs run, progress is
//! reported per request, a cancelled request stops its program, and a confirmation this
//! client cannot be asked (it offers no elicitation) is refused saying so. (The Python
//! SDK's modern client covers streamable HTTP: tests/interop/python_modern.py.)

use crate::common;

use std::time::{Duration, Instant};

use common::BIN;
use rmcp::{
    RoleClient,
    model::{
        CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest, ProtocolVersion,
    },
    service::{ClientLifecycleMode, ClientServiceExt, PeerRequestOptions, RunningService},
    transport::TokioChildProcess,
};
use serde_json::{Value, json};

/// `serve` over stdio, driven by a client that discovers instead of handshaking.
async fn modern_stdio(
    args: &[&str],
) -> (
    RunningService<RoleClient, common::ProgressListener>,
    tokio::sync::mpsc::UnboundedReceiver<rmcp::model::ProgressNotificationParam>,
) {
    let (listener, heard) = common::ProgressListener::new(Default::default());
    let mut command = tokio::process::Command::new(BIN);
    command.arg("serve").args(args).env("CODEMODE_LOG", "warn");
    let client = listener
        .serve_with_lifecycle(
            TokioChildProcess::new(command).expect("spawn codemode-mcp"),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("server/discover with codemode-mcp");
    (client, heard)
}

fn call(code: &str) -> CallToolRequestParams {
    let Value::Object(arguments) = json!({ "code": code }) else {
        unreachable!()
    };
    CallToolRequestParams::new("execute_code").with_arguments(arguments)
}

#[tokio::test]
async fn rmcp_modern_client_over_stdio() {
    let dir = common::scratch_dir("modern-stdio");
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
    let log = dir.join("audit.jsonl");
    let (client, mut heard) =
        modern_stdio(&["--config", &config, "--audit-log", log.to_str().unwrap()]).await;

    let tools = client.peer().list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "execute_code"), "{tools:?}");

    // Progress per request: rmcp gives every request a progress token.
    let ran = client
        .peer()
        .call_tool(call(
            "await tools.state.set({ key: 'a', value: 2 });\nreturn (await tools.state.get({ key: 'a' })) * 21;",
        ))
        .await
        .expect("tools/call");
    assert_eq!(common::unpack(ran).result(), &json!(42));
    for _ in 0..2 {
        let note = tokio::time::timeout(common::POLL_CEILING, heard.recv())
            .await
            .expect("a progress notification per tool call")
            .unwrap();
        assert!(
            note.message
                .as_deref()
                .is_some_and(|m| m.starts_with("tools.state.")),
            "{note:?}"
        );
    }

    // Nobody to ask: the refusal names why, and the server keeps serving.
    let refused: CallToolResult = client
        .peer()
        .call_tool(call("return await tools.toy.add({ a: 1, b: 2 });"))
        .await
        .expect("tools/call");
    let refused = common::unpack(refused);
    assert!(
        refused.is_error && refused.text.contains("2026-07-28"),
        "{refused:?}"
    );

    // A cancelled request stops its program.
    let handle = client
        .peer()
        .send_cancellable_request(
            ClientRequest::CallToolRequest(CallToolRequest::new(call(
                "await tools.state.set({ key: 'b', value: 1 });\nfor (;;) {}",
            ))),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("tools/call sent");
    tokio::time::timeout(common::POLL_CEILING, heard.recv())
        .await
        .expect("the program is running: its first call was reported")
        .unwrap();
    handle.cancel(Some("test".into())).await.expect("cancelled");
    let deadline = Instant::now() + common::POLL_CEILING;
    loop {
        let audit = std::fs::read_to_string(&log).unwrap_or_default();
        if audit.contains(r#""errorKind":"cancelled""#) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the program outlived its request: {audit}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = client
        .peer()
        .call_tool(call("return 'still serving';"))
        .await
        .expect("tools/call");
    assert_eq!(common::unpack(after).result(), &json!("still serving"));
}
