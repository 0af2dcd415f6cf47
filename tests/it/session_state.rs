//! Session state (`codemode.state`), through the real binary: data carried from one
//! execution to the next within a session (stdio, and one streamable HTTP session), never
//! across sessions, its caps, its audit record, and off by default.

use crate::common;

use common::{http::HttpServer, start};
use serde_json::json;

fn state_config(dir: &std::path::Path, extra: serde_json::Value) -> String {
    let mut state = json!({ "enabled": true, "maxValueBytes": 1000 });
    if let (Some(state), Some(extra)) = (state.as_object_mut(), extra.as_object()) {
        state.extend(extra.clone());
    }
    common::write_config(dir, &json!({ "codemode": { "state": state } }))
}

#[tokio::test]
async fn state_carries_over_within_a_stdio_session_with_caps_and_an_audit_record() {
    let dir = common::scratch_dir("state-stdio");
    let config = state_config(&dir, json!({}));
    let log = dir.join("audit.jsonl");
    let server = start(&["--config", &config, "--audit-log", log.to_str().unwrap()]).await;

    let first = server
        .execute("const before = await tools.state.get({ key: 'count' });\nawait tools.state.set({ key: 'count', value: 1 });\nreturn before;")
        .await;
    assert!(!first.is_error, "{first:?}");
    assert_eq!(first.result(), &json!(null));
    let second = server
        .execute("const n: number = await tools.state.get({ key: 'count' });\nconst usage = await tools.state.set({ key: 'count', value: n + 1 });\nawait tools.state.set({ key: 'notes/a', value: { text: 'x' } });\nreturn { n: n + 1, usage, keys: await tools.state.list({ prefix: 'notes/' }) };")
        .await;
    assert!(!second.is_error, "{second:?}");
    assert_eq!(
        second.result(),
        &json!({ "n": 2, "usage": { "keys": 1, "bytes": 1 }, "keys": ["notes/a"] })
    );

    // A value past the cap is a ToolError the program can read, naming the setting.
    let big = server
        .execute("await tools.state.set({ key: 'big', value: 'x'.repeat(2000) });")
        .await;
    assert!(big.is_error);
    assert_eq!(big.error_kind(), "tool", "{big:?}");
    assert!(
        big.error_message().contains("codemode.state.maxValueBytes"),
        "{big:?}"
    );
    assert!(
        !big.error_message().contains("set: tools.state.set"),
        "{big:?}"
    );
    let deleted = server
        .execute("return [await tools.state.delete({ key: 'count' }), await tools.state.get({ key: 'count' })];")
        .await;
    assert_eq!(deleted.result(), &json!([true, null]));
    server.assert_alive().await;

    // Each write is a call in its execution's audit record.
    let audit = std::fs::read_to_string(&log).unwrap();
    assert_eq!(audit.matches(r#""tool":"state.set""#).count(), 4, "{audit}");
    assert_eq!(
        // `delete` is a reserved word: its JS name is `delete_` (`state.delete` still works).
        audit.matches(r#""tool":"state.delete_""#).count(),
        1,
        "{audit}"
    );

    // A new server process is a new session: nothing carried over.
    drop(server);
    let server = start(&["--config", &config]).await;
    let fresh = server.execute("return await tools.state.list({});").await;
    assert_eq!(fresh.result(), &json!([]));
}

#[tokio::test]
async fn http_sessions_keep_their_own_state() {
    let dir = common::scratch_dir("state-http");
    let config = state_config(&dir, json!({}));
    let server = HttpServer::start(&["--config", &config]);
    let alice = server.client().await;
    let bob = server.client().await;
    let set = common::http::execute(
        alice.peer(),
        "await tools.state.set({ key: 'who', value: 'alice' });\nreturn 1;",
    )
    .await;
    assert!(!set.is_error, "{set:?}");
    let seen_by_bob =
        common::http::execute(bob.peer(), "return await tools.state.get({ key: 'who' });").await;
    assert_eq!(seen_by_bob.result(), &json!(null));
    let seen_by_alice = common::http::execute(
        alice.peer(),
        "return await tools.state.get({ key: 'who' });",
    )
    .await;
    assert_eq!(seen_by_alice.result(), &json!("alice"));
}

#[tokio::test]
async fn state_is_off_by_default_and_its_namespace_is_reserved() {
    let server = start(&[]).await;
    let ran = server
        .execute("return await tools.state.get({ key: 'x' });")
        .await;
    assert!(ran.is_error);
    assert!(ran.error_message().contains("does not exist"), "{ran:?}");

    let dir = common::scratch_dir("state-taken");
    let config = common::write_config(
        &dir,
        &json!({
            "mcpServers": { "state": common::toy() },
            "codemode": { "state": { "enabled": true } }
        }),
    );
    let out = std::process::Command::new(common::BIN)
        .args(["run", "--config", &config, "-"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"state\""), "{stderr}");
}

#[tokio::test]
async fn state_on_disk_outlives_the_process() {
    let dir = common::scratch_dir("state-disk");
    let database = dir.join("state.sqlite");
    let config = state_config(&dir, json!({ "path": database }));
    let server = start(&["--config", &config]).await;
    // The host's own namespace is also the global `state`.
    let ran = server
        .execute("await state.set({ key: 'plan', value: { step: 2, done: ['a'] } });\nawait state.set({ key: 'gone', value: 1 });\nreturn await state.delete({ key: 'gone' });")
        .await;
    assert_eq!(ran.result(), &json!(true), "{ran:?}");
    drop(server);

    // A new process (the same stdio session, as a client restarting its server sees it)
    // reads it back.
    let server = start(&["--config", &config]).await;
    let ran = server
        .execute("return [await state.get({ key: 'plan' }), await state.list({})];")
        .await;
    assert_eq!(
        ran.result(),
        &json!([{ "step": 2, "done": ["a"] }, ["plan"]]),
        "{ran:?}"
    );
    // Caps hold for what was read back too.
    let big = server
        .execute("await state.set({ key: 'big', value: 'x'.repeat(2000) });")
        .await;
    assert!(big.error_message().contains("maxValueBytes"), "{big:?}");
    drop(server);

    // It is a plain SQLite database.
    let connection = rusqlite::Connection::open(&database).unwrap();
    let value: String = connection
        .query_row("SELECT value FROM state WHERE key = 'plan'", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(value, r#"{"step":2,"done":["a"]}"#);

    // A database that cannot be opened stops the server at start, naming the key.
    let bad = state_config(
        &dir,
        json!({ "path": dir.join("no/such/dir/state.sqlite") }),
    );
    let output = std::process::Command::new(common::BIN)
        .args(["serve", "--config", &bad])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("codemode.state.path"), "{stderr}");
}
