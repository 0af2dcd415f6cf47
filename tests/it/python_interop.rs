//! Interop: the official Python SDK client (`mcp` from PyPI) against the real binary.
//! The README's test command installs it into a venv and points CODEMODE_TEST_PYTHON there.

use crate::common;

use std::process::Command;

#[test]
fn official_python_sdk_client_drives_the_server() {
    let python = std::env::var("CODEMODE_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CODEMODE_TEST_PYTHON is not set: it must name a Python with the `mcp` package. \
             Run the tests with ./scripts/test, which installs it"
        )
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python_client.py"
    );
    let out = Command::new(&python)
        .arg(script)
        .arg(common::BIN)
        .output()
        .expect("run the Python interop client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Python client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok: the server keeps serving"), "{stdout}");
}

/// The Python SDK's `Client` in its default (2026-07-28) mode and in legacy mode over
/// streamable HTTP: `state.*` stores are never shared between clients, and confirmations
/// are asked by `input_required` (modern) or elicitation (legacy).
#[test]
fn modern_python_clients_never_share_state_and_confirm_by_input_required() {
    let python = common::python();
    let dir = common::scratch_dir("python-modern");
    let config = common::write_config(
        &dir,
        &serde_json::json!({ "codemode": {
            "state": { "enabled": true },
            "skills": { "path": dir.join("skills") }
        } }),
    );
    let server = common::http::HttpServer::start(&["--config", &config]);
    let confirming_dir = common::scratch_dir("python-modern-confirm");
    let confirming = common::write_config(
        &confirming_dir,
        &serde_json::json!({
            "mcpServers": { "toy": common::toy() },
            "codemode": {
                "policy": { "rules": [{ "tools": "toy.add", "action": "confirm" }] },
                "state": { "enabled": true }
            }
        }),
    );
    let confirming_server = common::http::HttpServer::start(&["--config", &confirming]);
    let slow_dir = common::scratch_dir("python-modern-unanswered");
    let slow = common::write_config(
        &slow_dir,
        &serde_json::json!({
            "mcpServers": { "toy": common::toy() },
            "codemode": { "policy": {
                "rules": [{ "tools": "toy.add", "action": "confirm" }],
                "approvalTimeoutMs": 100
            } }
        }),
    );
    let slow_audit = slow_dir.join("audit.jsonl");
    let slow = common::http::HttpServer::start(&[
        "--config",
        &slow,
        "--audit-log",
        slow_audit.to_str().unwrap(),
    ]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python_modern.py"
    );
    let out = Command::new(&python)
        .arg(script)
        .arg(server.url("/mcp"))
        .arg(confirming_server.url("/mcp"))
        .arg(slow.url("/mcp"))
        .arg(&slow_audit)
        .arg(common::BIN)
        .arg(&confirming)
        .output()
        .expect("run the Python modern client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Python client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok: done"), "{stdout}");
}

/// What a model reads, through the Python SDK's `Client` in its default mode and in
/// legacy mode (streamable HTTP) and over stdio: budgeted answers with the notice first
/// and the whole output readable, the hints for failures a model would not see, a down
/// server's message, and discovery inside a program (tests/interop/python_answers.py).
#[test]
fn python_clients_read_budgeted_answers_and_actionable_failures() {
    let python = common::python();
    let dir = common::scratch_dir("python-answers");
    let config = common::write_config(
        &dir,
        &serde_json::json!({ "mcpServers": {
            "toy": common::toy(),
            "wide": { "command": python, "args": [concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upstreams/wide.py")] },
            "time": { "command": "/bin/sh", "args": ["-c", "exit 3"] },
        }, "codemode": { "typecheck": { "tsc": std::env::var("CODEMODE_TEST_TSC").expect("CODEMODE_TEST_TSC: run the tests with ./scripts/test") } } }),
    );
    let server = common::http::HttpServer::start(&["--config", &config]);
    let (alice, bob) = (
        "alice-token-long-enough-0001",
        "bob-token-long-enough-00002",
    );
    let owned_dir = common::scratch_dir("python-answers-owned");
    let owned =
        common::http::HttpServer::start_with_token(&owned_dir, &format!("{alice}\n{bob}"), &[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python_answers.py"
    );
    let out = Command::new(&python)
        .arg(script)
        .arg(server.url("/mcp"))
        .arg(common::BIN)
        .arg(&config)
        .arg(owned.url("/mcp"))
        .arg(alice)
        .arg(bob)
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Python client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok: done"), "{stdout}");
}

/// Least privilege and quotas per principal through the Python SDK's `Client`, in its
/// default mode and in legacy mode (tests/interop/python_tenants.py).
#[test]
fn python_clients_see_only_their_principals_tools_and_meet_its_quota() {
    let dir = common::scratch_dir("python-tenants");
    let config = common::write_config(
        &dir,
        &serde_json::json!({
            "mcpServers": { "toy": common::toy() },
            "codemode": { "tenants": [
                { "principals": ["alice"], "default": "deny",
                  "rules": [{ "tools": "toy.add", "action": "allow" }],
                  "quotas": { "executionsPerMinute": 4 } },
                { "principals": ["bob"], "rules": [{ "tools": "toy.add", "action": "deny" }] }
            ] }
        }),
    );
    let (alice, alice_line) = crate::principals::make_token("alice", &[]);
    let (bob, bob_line) = crate::principals::make_token("bob", &[]);
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("{alice_line}\n{bob_line}\n")).unwrap();
    let server = common::http::HttpServer::start(&[
        "--config",
        &config,
        "--auth-token-file",
        tokens.to_str().unwrap(),
    ]);
    let out = Command::new(common::python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/python_tenants.py"
        ))
        .args([server.url("/mcp"), alice, bob])
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Python client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok: done"), "{stdout}");
}
