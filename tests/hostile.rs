//! The hostile-program suite: each file in `tests/hostile/` is a program whose header
//! says how it must end (`// expect: ok | <error kind>`, optionally `// result: <JSON>`
//! and `// timeoutMs: N`, default 1000). Run through the real server (worker processes,
//! a policy that denies `toy.fail`, the audit log on): every case must end as expected
//! within its time limit + 250 ms, the server must keep serving after each, and at the
//! end no worker is left a zombie and the audit chain verifies.

mod common;

use std::path::PathBuf;

use common::{BIN, children, start, toy};
use serde_json::{Value, json};

struct Case {
    name: String,
    code: String,
    expect: String,
    result: Option<Value>,
    timeout_ms: u64,
}

fn cases() -> Vec<Case> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "js"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let code = std::fs::read_to_string(&path).unwrap();
            let header = |key: &str| {
                code.lines()
                    .take_while(|l| l.starts_with("//"))
                    .find_map(|l| l.strip_prefix(&format!("// {key}: ")))
                    .map(str::to_string)
            };
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            Case {
                expect: header("expect").unwrap_or_else(|| panic!("{name}: no `// expect:`")),
                result: header("result").map(|r| serde_json::from_str(&r).unwrap()),
                timeout_ms: header("timeoutMs").map_or(1000, |t| t.parse().unwrap()),
                name,
                code,
            }
        })
        .collect()
}

#[tokio::test]
async fn hostile_programs_end_as_expected_and_the_server_survives() {
    let dir = common::scratch_dir("hostile");
    let log = dir.join("audit.jsonl");
    let config = common::write_config(
        &dir,
        &json!({
            "mcpServers": { "toy": toy() },
            "codemode": { "policy": { "rules": [{ "tools": "toy.fail", "action": "deny" }] } }
        }),
    );
    let server = start(&["--config", &config, "--audit-log", log.to_str().unwrap()]).await;
    let cases = cases();
    assert!(cases.len() >= 40, "the suite shrank: {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let ran = server
            .execute_with(json!({ "code": case.code, "timeoutMs": case.timeout_ms }))
            .await;
        let kind = if ran.is_error {
            ran.error_kind().to_string()
        } else {
            "ok".to_string()
        };
        if kind != case.expect {
            failures.push(format!(
                "{}: expected {}, got {kind}: {}",
                case.name,
                case.expect,
                ran.error_message()
            ));
        }
        if let Some(result) = &case.result
            && ran.result() != result
        {
            failures.push(format!(
                "{}: result {} instead of {result}",
                case.name,
                ran.result()
            ));
        }
        if ran.duration_ms() > case.timeout_ms + 250 {
            failures.push(format!(
                "{}: took {} ms, past its limit of {} ms + 250",
                case.name,
                ran.duration_ms(),
                case.timeout_ms
            ));
        }
        server.assert_alive().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let zombies: Vec<_> = children(server.pid)
        .into_iter()
        .filter(|(_, state, _)| *state == 'Z')
        .collect();
    assert!(
        zombies.is_empty() || {
            // Retired workers are reaped in the background; give them a moment.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            children(server.pid)
                .iter()
                .all(|(_, state, _)| *state != 'Z')
        },
        "zombie workers: {zombies:?}"
    );
    assert!(
        server.peak_rss_kib() < 200 * 1024,
        "server RSS {} KiB",
        server.peak_rss_kib()
    );

    let out = std::process::Command::new(BIN)
        .args(["audit", "verify"])
        .arg(&log)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{} records", 2 * cases.len())),
        "every case and every check after it is audited: {stdout}"
    );
}
