//! Quotas per principal, through the real binary: each one hit (executions per minute,
//! executions at once, tool calls per day, fetch bytes per day, CPU seconds per hour),
//! refused with kind `quota` saying which quota, its window and when it frees up, nothing
//! run; other principals unaffected; `/metrics` counting the refusals; the windows kept on
//! disk across restarts; and the cost of each execution in its audit record.

use crate::common;

use common::http::{HttpServer, answer_of, execute, post_modern};
use serde_json::{Value, json};

fn audit_records(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A program whose CPU time is its own fixed work, whatever the machine's load.
const BURN: &str =
    "let x = 0;\nfor (let i = 0; i < 3e6; i++) x = (x * 31 + i) % 1000003;\nreturn x;";

#[tokio::test]
async fn each_quota_refuses_past_it_with_kind_quota_and_when_it_frees_up() {
    let dir = common::scratch_dir("quotas");
    let web = common::web::start().await;
    let names = [
        "alice", "bob", "carol", "dave", "erin", "frank", "gina", "ops",
    ];
    let mut tokens = std::collections::HashMap::new();
    let mut lines = String::new();
    for name in names {
        let scopes: &[&str] = if name == "ops" {
            &["codemode:operator"]
        } else {
            &[]
        };
        let (token, line) = crate::principals::make_token(name, scopes);
        tokens.insert(name, token);
        lines.push_str(&line);
        lines.push('\n');
    }
    let token_file = dir.join("tokens");
    std::fs::write(&token_file, lines).unwrap();
    let log = dir.join("audit.jsonl");
    let config = common::write_config(
        &dir,
        &json!({
            "mcpServers": { "toy": common::toy() },
            "codemode": {
                "egress": { "rules": [{ "url": format!("http://{}/**", web.addr), "allowPrivate": true }] },
                "tenants": [
                    { "principals": ["alice"], "quotas": { "executionsPerMinute": 2 } },
                    { "principals": ["carol"], "quotas": { "concurrentExecutions": 1 } },
                    { "principals": ["dave"], "quotas": { "toolCallsPerDay": 3 } },
                    { "principals": ["erin"], "quotas": { "egressBytesPerDay": 1000 } },
                    { "principals": ["frank"], "quotas": { "cpuSecondsPerHour": 0.001 } },
                    { "principals": ["gina"], "quotas": { "executionsPerMinute": 1 },
                      "rules": [{ "tools": "toy.slow", "action": "confirm" }] }
                ]
            }
        }),
    );
    let server = HttpServer::start(&[
        "--config",
        &config,
        "--auth-token-file",
        token_file.to_str().unwrap(),
        "--audit-log",
        log.to_str().unwrap(),
    ]);
    let token = |name: &str| tokens[name].clone();

    // Executions per minute: alice's third is refused, bob (no quota) runs on.
    let alice = server.client_with_token(&token("alice")).await;
    for _ in 0..2 {
        let ran = execute(alice.peer(), "return 1").await;
        assert!(!ran.is_error, "{}", ran.text);
    }
    let refused = execute(alice.peer(), "return 1").await;
    assert_eq!(refused.error_kind(), "quota", "{}", refused.text);
    for part in [
        "nothing ran",
        "2 executions per minute",
        "codemode.tenants[0].quotas.executionsPerMinute",
        "it frees up in ",
    ] {
        assert!(
            refused.error_message().contains(part),
            "{part}: {}",
            refused.text
        );
    }
    // A 2026-07-28 request gets the same refusal as a tool result, in a 200.
    let modern = post_modern(
        &server,
        9,
        "tools/call",
        json!({"name": "execute_code", "arguments": {"code": "return 1"}}),
    )
    .bearer_auth(token("alice"))
    .send()
    .await
    .unwrap();
    assert_eq!(modern.status(), 200);
    let answer = answer_of(modern).await;
    assert_eq!(answer["result"]["isError"], json!(true), "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"]["error"]["kind"],
        json!("quota"),
        "{answer}"
    );
    alice.cancel().await.unwrap();
    let bob = server.client_with_token(&token("bob")).await;
    for _ in 0..3 {
        assert!(!execute(bob.peer(), "return 1").await.is_error);
    }
    bob.cancel().await.unwrap();

    // Executions at once: carol's second, while her first waits on a slow tool.
    let carol = server.client_with_token(&token("carol")).await;
    let waiting = carol.peer().clone();
    let first = tokio::spawn(async move {
        execute(&waiting, "return await tools.toy.slow({ ms: 20000 });").await
    });
    let http = reqwest::Client::new();
    let metrics = || async {
        http.get(server.url("/metrics"))
            .bearer_auth(token("ops"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    common::poll_until("carol's first execution in flight", || async {
        metrics()
            .await
            .lines()
            .any(|l| l == "codemode_executions_in_flight 1")
            .then_some(())
    })
    .await;
    let second = server.client_with_token(&token("carol")).await;
    let refused = execute(second.peer(), "return 2").await;
    assert_eq!(refused.error_kind(), "quota", "{}", refused.text);
    assert!(
        refused
            .error_message()
            .contains("already runs 1 executions at once")
            && refused.error_message().contains("concurrentExecutions"),
        "{}",
        refused.text
    );
    first.abort();
    carol.cancel().await.unwrap();
    second.cancel().await.unwrap();

    // Tool calls per day: dave's fourth call is refused at the call, then his next
    // execution before it runs.
    let dave = server.client_with_token(&token("dave")).await;
    let two =
        "await tools.toy.add({ a: 1, b: 2 });\nreturn (await tools.toy.add({ a: 3, b: 4 })).sum;";
    assert_eq!(execute(dave.peer(), two).await.result(), &json!(7));
    let past = execute(dave.peer(), two).await;
    assert_eq!(past.error_kind(), "quota", "{}", past.text);
    assert!(
        past.error_message().contains("toolCallsPerDay"),
        "{}",
        past.text
    );
    let next = execute(dave.peer(), "return 1").await;
    assert_eq!(next.error_kind(), "quota", "{}", next.text);
    assert!(
        next.error_message().contains("3 tool calls per 24 hours"),
        "{}",
        next.text
    );
    dave.cancel().await.unwrap();

    // Fetch bytes per day: erin's one fetch of more than the quota, then nothing more.
    let erin = server.client_with_token(&token("erin")).await;
    let fetch = format!(
        "const r = await fetch('{}');\nreturn (await r.text()).length;",
        web.url(&format!("/echo?pad={}", "p".repeat(1500)))
    );
    let fetched = execute(erin.peer(), &fetch).await;
    assert!(!fetched.is_error, "{}", fetched.text);
    let after = execute(erin.peer(), "return 1").await;
    assert_eq!(after.error_kind(), "quota", "{}", after.text);
    assert!(
        after.error_message().contains("egressBytesPerDay"),
        "{}",
        after.text
    );
    erin.cancel().await.unwrap();

    // CPU seconds per hour: frank's fixed work is more than his quota.
    let frank = server.client_with_token(&token("frank")).await;
    let burnt = execute(frank.peer(), BURN).await;
    assert!(!burnt.is_error, "{}", burnt.text);
    assert!(
        burnt.structured["cpuMs"].as_f64().unwrap() >= 1.0,
        "the answer says what CPU it used: {}",
        burnt.structured
    );
    let after = execute(frank.peer(), "return 1").await;
    assert_eq!(after.error_kind(), "quota", "{}", after.text);
    assert!(after.structured.get("cpuMs").is_none(), "nothing ran");
    assert!(
        after.error_message().contains("cpuSecondsPerHour")
            && after.error_message().contains("per hour"),
        "{}",
        after.text
    );
    frank.cancel().await.unwrap();

    // A 2026-07-28 round that only asks the user (nothing ran) is not an execution: gina's
    // one execution per minute is still hers after it.
    let asked = answer_of(
        common::http::post_modern_with(
            &server,
            11,
            "tools/call",
            json!({"name": "execute_code", "arguments": {"code": "return await tools.toy.slow({ ms: 1 });"}}),
            json!({"elicitation": {}}),
        )
        .bearer_auth(token("gina"))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        asked["result"]["resultType"],
        json!("input_required"),
        "{asked}"
    );
    let gina = server.client_with_token(&token("gina")).await;
    assert_eq!(execute(gina.peer(), "return 1").await.result(), &json!(1));
    assert_eq!(execute(gina.peer(), "return 2").await.error_kind(), "quota");
    gina.cancel().await.unwrap();

    // The refusals are counted, by principal and quota.
    let text = metrics().await;
    for (principal, quota) in [
        ("alice", "executionsPerMinute"),
        ("carol", "concurrentExecutions"),
        ("dave", "toolCallsPerDay"),
        ("erin", "egressBytesPerDay"),
        ("frank", "cpuSecondsPerHour"),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!(
                "codemode_quota_refusals_total{{principal=\"{principal}\",quota=\"{quota}\"}}"
            ))),
            "{principal} {quota} in\n{text}"
        );
    }
    assert!(
        text.contains("codemode_execution_cpu_seconds_total{principal=\"frank\"}"),
        "{text}"
    );

    // What each execution cost is in its record: frank's CPU, dave's calls, erin's bytes.
    let records = audit_records(&log);
    let cost_of = |principal: &str, code: &str| {
        records
            .iter()
            .find(|r| r["origin"]["principal"] == json!(principal) && r["code"] == json!(code))
            .map(|r| r["cost"].clone())
            .unwrap_or_else(|| panic!("{principal}'s record of {code}"))
    };
    let burnt = cost_of("frank", BURN);
    assert!(burnt["cpuUs"].as_u64().unwrap() >= 1_000, "{burnt}");
    assert!(burnt["heapPeakBytes"].as_u64().unwrap() > 0, "{burnt}");
    let called = cost_of("dave", two);
    assert_eq!(called["toolCalls"], json!({ "toy": 2 }), "{called}");
    assert!(called["bytesOut"].as_u64().unwrap() > 0, "{called}");
    let fetched = cost_of("erin", &fetch);
    assert_eq!(fetched["fetches"], json!(1), "{fetched}");
    assert!(fetched["egressBytes"].as_u64().unwrap() > 1000, "{fetched}");
    let refused = records
        .iter()
        .find(|r| r["errorKind"] == json!("quota"))
        .unwrap();
    assert!(refused["cost"]["cpuUs"].is_null(), "nothing ran: {refused}");

    // `usage` sums the log: by principal as JSON, by tool as CSV, priced by a sheet.
    let usage = |args: &[&str]| {
        let out = std::process::Command::new(common::BIN)
            .arg("usage")
            .arg(&log)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let rows: Vec<Value> =
        serde_json::from_str(&usage(&["--since", "1h", "--format", "json"])).unwrap();
    let row = |key: &str| {
        rows.iter()
            .find(|r| r["key"] == json!(key))
            .unwrap()
            .clone()
    };
    assert!(
        row("frank")["cpuSeconds"].as_f64().unwrap() > 0.0,
        "{rows:?}"
    );
    assert_eq!(row("dave")["toolCalls"], json!(3), "{rows:?}");
    assert_eq!(row("alice")["executions"], json!(4), "{rows:?}");
    assert!(
        row("erin")["egressBytes"].as_u64().unwrap() > 1000,
        "{rows:?}"
    );
    let csv = usage(&["--by", "tool", "--format", "csv"]);
    assert!(csv.starts_with("tool,executions,errors,"), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("toy.add,2,1,")), "{csv}");
    let sheet = dir.join("prices.json");
    std::fs::write(&sheet, r#"{"currency": "EUR", "perCall": {"toy": 0.5}}"#).unwrap();
    let priced = usage(&["--prices", sheet.to_str().unwrap()]);
    let dave_line = priced.lines().find(|l| l.starts_with("dave ")).unwrap();
    assert!(
        priced.lines().next().unwrap().ends_with("price (EUR)"),
        "{priced}"
    );
    assert!(dave_line.ends_with(" 1.500000"), "{priced}");
}

/// The windows in `codemode.quotas.path` outlive the process: `run` is a process of its
/// own each time.
#[test]
fn windows_on_disk_survive_a_restart() {
    let dir = common::scratch_dir("quotas-disk");
    let config = common::write_config(
        &dir,
        &json!({ "codemode": { "quotas": {
            "executionsPerMinute": 1,
            "path": dir.join("quotas.sqlite")
        } } }),
    );
    let run = || {
        std::process::Command::new(common::BIN)
            .args(["run", "--config", &config, "-"])
            .env("CODEMODE_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = run();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains("quota") && stderr.contains("codemode.quotas.executionsPerMinute"),
        "{stderr}"
    );
}
