//! The audit log: one hash-chained record per execution, written by the real server, and
//! `codemode-mcp audit verify` finding edits, deletions and torn tails, at either end of the
//! chain too (against its anchor, `FILE.anchor`), and the server refusing at start to
//! continue a chain whose end does not verify.

use crate::common;

use std::{path::Path, process::Command};

use common::{BIN, http::HttpServer, start};
use serde_json::{Value, json};

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `audit verify FILES...`: (success, stdout).
fn verify(files: &[&Path]) -> (bool, String) {
    verify_with(&[], files)
}

/// `audit verify FLAGS... FILES...`: (success, stdout).
fn verify_with(flags: &[&str], files: &[&Path]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify"])
        .args(flags)
        .args(files)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "audit verify exits 0 or 1: {out:?}"
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Starts the server on `log` with nothing on its stdin, so it stops as soon as it has
/// opened the log (or failed to): (opened, stderr). Without a client it always ends in an
/// error; only one about the audit log means the log was refused.
fn start_and_stop(log: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["serve", "--audit-log"])
        .arg(log)
        .env("CODEMODE_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (!stderr.contains("Error: audit log"), stderr)
}

/// A log of four records written by the real server: (its path, its lines).
async fn four_records(tag: &str) -> (std::path::PathBuf, Vec<String>) {
    let dir = common::scratch_dir(tag);
    let log = dir.join("audit.jsonl");
    let server = start(&["--audit-log", log.to_str().unwrap()]).await;
    for i in 0..4 {
        server.execute(&format!("return {i};")).await;
    }
    drop(server);
    let lines = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    (log, lines)
}

fn write_lines(log: &Path, lines: &[String]) {
    std::fs::write(log, lines.join("\n") + "\n").unwrap();
}

fn anchor_of(log: &Path) -> std::path::PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".anchor");
    name.into()
}

#[tokio::test]
async fn every_execution_is_recorded_and_the_chain_verifies() {
    let dir = common::scratch_dir("audit");
    let log = dir.join("audit.jsonl");
    let server = start(&["--audit-log", log.to_str().unwrap()]).await;
    server
        .execute("console.log('hi');\nreturn [1, 2, 3];")
        .await;
    server.execute("throw new Error('no');").await;
    server
        .execute_with(json!({"code": "while (true) {}", "timeoutMs": 100}))
        .await;
    let written = records(&log);
    assert_eq!(written.len(), 3, "one record per execution");
    assert_eq!(written[0]["seq"], json!(1));
    assert_eq!(written[0]["origin"]["transport"], json!("stdio"));
    assert!(written[0]["origin"]["client"].as_str().is_some());
    assert_eq!(
        written[0]["code"],
        json!("console.log('hi');\nreturn [1, 2, 3];")
    );
    assert_eq!(written[0]["resultBytes"], json!(7));
    assert_eq!(written[0]["logBytes"], json!(2));
    assert_eq!(written[1]["errorKind"], json!("runtime"));
    assert_eq!(written[2]["errorKind"], json!("timeout"));
    let (ok, out) = verify(&[&log]);
    assert!(ok, "{out}");
    assert!(
        out.contains("audit chain intact: 3 records (seq 1 to 3)"),
        "{out}"
    );
}

#[tokio::test]
async fn edits_deletions_and_torn_tails_are_found() {
    let dir = common::scratch_dir("audit-tamper");
    let log = dir.join("audit.jsonl");
    let server = start(&["--audit-log", log.to_str().unwrap()]).await;
    for i in 0..4 {
        server.execute(&format!("return {i};")).await;
    }
    drop(server);
    let original = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let write = |lines: &[String]| std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();

    // The code of record 2 edited: its own hash says so.
    let mut edited = owned.clone();
    edited[1] = edited[1].replace("return 1;", "return 9;");
    write(&edited);
    let (ok, out) = verify(&[&log]);
    assert!(
        !ok && out.contains(":2: record 2: its code does not match"),
        "{out}"
    );

    // Edited with its code hash fixed too: the next record's link names the edited one.
    let mut record: Value = serde_json::from_str(&edited[1]).unwrap();
    record["codeSha256"] = json!(sha256("return 9;"));
    edited[1] = record.to_string();
    write(&edited);
    let (ok, out) = verify(&[&log]);
    assert!(!ok && out.contains(":2: record 2 was edited"), "{out}");

    // A missing file says so.
    let (ok, out) = verify(&[&dir.join("nope.jsonl")]);
    assert!(
        !ok && out.contains("nope.jsonl:0: the file is missing"),
        "{out}"
    );

    // A record deleted.
    let mut deleted = owned.clone();
    deleted.remove(1);
    write(&deleted);
    let (ok, out) = verify(&[&log]);
    assert!(!ok && out.contains(":2: record 3 does not follow"), "{out}");

    // A torn last line (a crash mid-write) is ignored, then cut off by the next start,
    // and the chain goes on.
    std::fs::write(&log, original.clone() + "{\"seq\":5,\"prev\":\"ab").unwrap();
    let (ok, out) = verify(&[&log]);
    assert!(ok && out.contains("torn last line"), "{out}");
    let server = start(&["--audit-log", log.to_str().unwrap()]).await;
    server.execute("return 'after the crash';").await;
    let (ok, out) = verify(&[&log]);
    assert!(ok && out.contains("5 records (seq 1 to 5)"), "{out}");
}

#[tokio::test]
async fn the_chain_continues_across_rotated_files() {
    let dir = common::scratch_dir("audit-rotate");
    let log = dir.join("audit.jsonl");
    let config = common::write_config(
        &dir,
        &json!({"codemode": {"audit": {"path": log, "maxBytes": 1600}}}),
    );
    let server = start(&["--config", &config]).await;
    for i in 0..6 {
        server.execute(&format!("return {i};")).await;
    }
    let rotated = dir.join("audit.jsonl.1");
    assert!(rotated.exists(), "the log was rotated");
    let older = dir.join("audit.jsonl.2");
    let mut files: Vec<&Path> = Vec::new();
    if older.exists() {
        files.push(&older);
    }
    files.push(&rotated);
    files.push(&log);
    let (ok, out) = verify(&files);
    assert!(ok && out.contains("to 6)"), "{out}");
    assert!(out.contains("anchored: it starts and ends where"), "{out}");
    // The anchor knows where the kept chain starts: the live file alone is not all of it.
    let (ok, out) = verify(&[&log]);
    assert!(
        !ok && out.contains(":1: record ") && out.contains("is the first, but the anchor"),
        "{out}"
    );
}

#[tokio::test]
async fn records_cut_from_the_end_are_found() {
    let (log, lines) = four_records("audit-tail").await;
    write_lines(&log, &lines[..3]);
    let (ok, out) = verify(&[&log]);
    assert!(
        !ok && out.contains(":4: record 4 is missing from the end: the anchor"),
        "{out}"
    );
    write_lines(&log, &lines[..2]);
    let (ok, out) = verify(&[&log]);
    assert!(
        !ok && out.contains(":3: records 3 to 4 are missing"),
        "{out}"
    );
    let (started, stderr) = start_and_stop(&log);
    assert!(
        !started && stderr.contains(":3: records 3 to 4 are missing"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_edit_of_the_last_record_is_found_and_not_continued() {
    let (log, mut lines) = four_records("audit-last").await;
    // Edited with its code hash fixed too: no record after it to break.
    let mut last: Value = serde_json::from_str(&lines[3]).unwrap();
    last["code"] = json!("return 9;");
    last["codeSha256"] = json!(sha256("return 9;"));
    lines[3] = last.to_string();
    write_lines(&log, &lines);
    let (ok, out) = verify(&[&log]);
    assert!(
        !ok && out.contains(":4: record 4 is not the record the anchor"),
        "{out}"
    );
    let (started, stderr) = start_and_stop(&log);
    assert!(
        !started
            && stderr.contains("audit.jsonl:4: record 4 is not the record the anchor")
            && stderr.contains("move the log and its .anchor away to start a new chain"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        lines.join("\n") + "\n",
        "nothing was chained onto it"
    );
}

#[tokio::test]
async fn records_cut_from_the_start_are_found() {
    let (log, lines) = four_records("audit-head").await;
    write_lines(&log, &lines[2..]);
    let (ok, out) = verify(&[&log]);
    assert!(
        !ok && out.contains(":1: record 3 is the first, but the anchor (")
            && out.contains(
                "says the chain starts at record 1: records 1 to 2 were deleted from the start"
            ),
        "{out}"
    );
}

#[tokio::test]
async fn a_last_record_cut_mid_line_is_found_and_not_repaired() {
    let (log, lines) = four_records("audit-torn").await;
    let cut = format!(
        "{}\n{}",
        lines[..3].join("\n"),
        &lines[3][..lines[3].len() / 2]
    );
    std::fs::write(&log, &cut).unwrap();
    let (ok, out) = verify(&[&log]);
    assert!(
        !ok && out.contains(":4: record 4's line is torn (cut mid-line), but the anchor"),
        "{out}"
    );
    let (started, stderr) = start_and_stop(&log);
    assert!(
        !started && stderr.contains(":4: record 4's line is torn"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        cut,
        "the torn line is kept"
    );
    let (ok, out) = verify(&[&log]);
    assert!(!ok && out.contains(":4: record 4's line is torn"), "{out}");
}

#[tokio::test]
async fn a_record_written_but_not_anchored_is_anchored_at_the_next_start() {
    let dir = common::scratch_dir("audit-window");
    let log = dir.join("audit.jsonl");
    let server = start(&["--audit-log", log.to_str().unwrap()]).await;
    server.execute("return 1;").await;
    server.execute("return 2;").await;
    let anchored_at_two = std::fs::read(anchor_of(&log)).unwrap();
    server.execute("return 3;").await;
    drop(server);
    // A crash after record 3's line was fsynced, before its anchor was written.
    std::fs::write(anchor_of(&log), &anchored_at_two).unwrap();
    let server = start(&["--audit-log", log.to_str().unwrap()]).await;
    server.execute("return 4;").await;
    let anchor: Value = serde_json::from_slice(&std::fs::read(anchor_of(&log)).unwrap()).unwrap();
    assert_eq!(anchor["head"]["seq"], json!(4), "{anchor}");
    assert_eq!(anchor["records"], json!(4), "{anchor}");
    let (ok, out) = verify(&[&log]);
    assert!(ok && out.contains("4 records (seq 1 to 4)"), "{out}");
    assert!(out.contains("anchored:"), "{out}");
}

#[tokio::test]
async fn a_log_without_an_anchor_opens_and_verifies_with_a_warning() {
    let (log, _) = four_records("audit-legacy").await;
    // As an older codemode-mcp left it.
    std::fs::remove_file(anchor_of(&log)).unwrap();
    let (ok, out) = verify(&[&log]);
    assert!(ok && out.contains("4 records (seq 1 to 4)"), "{out}");
    assert!(
        out.contains("warning: no anchor file")
            && out.contains("records deleted from the end or the start cannot be detected"),
        "{out}"
    );
    let (started, stderr) = start_and_stop(&log);
    assert!(
        started && stderr.contains("no anchor file") && stderr.contains("cannot be detected"),
        "{stderr}"
    );
    let server = start(&["--audit-log", log.to_str().unwrap()]).await;
    server.execute("return 'anchored now';").await;
    let (ok, out) = verify(&[&log]);
    assert!(ok && out.contains("5 records (seq 1 to 5)"), "{out}");
    assert!(out.contains("anchored:"), "{out}");
}

#[tokio::test]
async fn a_head_kept_elsewhere_finds_a_rewrite_of_log_and_anchor() {
    let (log, lines) = four_records("audit-expect").await;
    let (ok, out) = verify(&[&log]);
    assert!(ok, "{out}");
    let head = out
        .lines()
        .find_map(|l| l.strip_prefix("head: record 4 sha256 "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the head is printed: {out}"))
        .to_string();
    assert_eq!(head, sha256(&lines[3]));
    let (ok, out) = verify_with(&["--expect-head", &head], &[&log]);
    assert!(ok && out.contains("the expected head is record 4"), "{out}");
    // The last record cut off and the anchor deleted with it: only the kept head tells.
    write_lines(&log, &lines[..3]);
    std::fs::remove_file(anchor_of(&log)).unwrap();
    let (ok, out) = verify(&[&log]);
    assert!(ok, "{out}");
    let (ok, out) = verify_with(&["--expect-head", &head], &[&log]);
    assert!(
        !ok && out.contains(":3: no record up to record 3 (the last) hashes to the expected head"),
        "{out}"
    );
}

#[tokio::test]
async fn http_records_name_the_transport_and_session() {
    let dir = common::scratch_dir("audit-http");
    let log = dir.join("audit.jsonl");
    let server = HttpServer::start(&["--audit-log", log.to_str().unwrap()]);
    let client = server.client().await;
    common::http::execute(&client, "return 'over http';").await;
    let written = records(&log);
    assert_eq!(written[0]["origin"]["transport"], json!("http"));
    assert!(
        written[0]["origin"]["session"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
}

fn sha256(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A client's cancellation ends the run at once, and the run is audited as cancelled.
#[tokio::test]
async fn a_cancelled_execution_is_audited_as_cancelled() {
    let dir = common::scratch_dir("audit-cancel");
    let log = dir.join("audit.jsonl");
    let server = start(&["--audit-log", log.to_str().unwrap()]).await;
    // rmcp's client sends notifications/cancelled when the call's future is dropped.
    let dropped = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        server.execute("while (true) {}"),
    )
    .await;
    assert!(dropped.is_err());
    // The record is written once the isolate has stopped: wait for its whole first line.
    common::wait_for("the cancelled run's audit record", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|text| text.contains('\n'))
    })
    .await;
    let written = records(&log);
    assert_eq!(written[0]["errorKind"], json!("cancelled"), "{written:?}");
    // Far short of the 30 s default limit: the cancellation, not the clock, ended it.
    assert!(
        written[0]["durationMs"].as_u64().unwrap() < 10_000,
        "stopped soon after the cancellation: {written:?}"
    );
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Target {
    name: String,
}

/// Approves every call it is asked about, once.
struct ApprovesOnce;

impl codemode_mcp::policy::Confirmer for ApprovesOnce {
    fn confirm(
        &self,
        _request: codemode_mcp::policy::ConfirmRequest,
    ) -> futures::future::BoxFuture<'static, codemode_mcp::policy::Confirmation> {
        Box::pin(std::future::ready(codemode_mcp::policy::Confirmation::Once))
    }
}

/// Each call's record says what the policy and budgets decided.
#[tokio::test]
async fn call_records_carry_the_policy_decision() {
    use codemode_mcp::{BuiltinTool, CodeMode, executor::RunOptions};
    let dir = common::scratch_dir("audit-decisions");
    let log = dir.join("audit.jsonl");
    let tool = |name: &str, annotations: rmcp::model::ToolAnnotations| {
        BuiltinTool::new(
            name.to_string(),
            "Acts on a target",
            |t: Target| async move { Ok(json!({ "done": t.name })) },
        )
        .with_annotations(annotations)
    };
    let codemode = CodeMode::builder()
        .tool(
            "ops",
            tool(
                "inspect",
                rmcp::model::ToolAnnotations::new().read_only(true),
            ),
        )
        .tool(
            "ops",
            tool(
                "drop",
                rmcp::model::ToolAnnotations::new().destructive(true),
            ),
        )
        .audit_log(&log)
        .build()
        .await
        .unwrap();
    codemode
        .execute_with(
            "await tools.ops.inspect({ name: 'a' });\nawait tools.ops.drop({ name: 'a' });\nawait tools.ops.inspect({ name: 1 }).catch(() => null);\nreturn 'ok';",
            RunOptions {
                confirmer: Some(std::sync::Arc::new(ApprovesOnce)),
                ..RunOptions::default()
            },
        )
        .await;
    let written = records(&log);
    let decisions: Vec<&str> = written[0]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["decision"].as_str().unwrap())
        .collect();
    assert_eq!(
        decisions,
        [
            "allowed",
            "confirmed before the run",
            "refused: invalid arguments"
        ]
    );
    assert_eq!(written[0]["origin"]["transport"], json!("library"));
}
