//! Oversight through the real binary: Prometheus metrics on the HTTP server and on the
//! `--metrics` listener beside stdio, and each anomaly flag raised by a scripted burst and
//! found where operators look (the audit record, the metrics, the log).

use crate::common;

use std::{path::Path, process::Stdio};

use common::http::{HttpServer, execute};
use serde_json::{Value, json};

/// The value of the sample `name{labels}` (labels exactly as printed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

async fn scrape(url: &str, token: Option<&str>) -> (u16, String, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("GET /metrics");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// The flags of each record in the audit log at `path`, in order.
fn audit_flags(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            record["flags"]
                .as_array()
                .map(|flags| {
                    flags
                        .iter()
                        .map(|f| f["flag"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_executions_calls_decisions_limits_and_upstreams() {
    let dir = common::scratch_dir("metrics");
    let config = common::write_config(
        &dir,
        &json!({
            "mcpServers": { "toy": common::toy() },
            "codemode": { "policy": { "rules": [{ "tools": "toy.fail", "action": "deny" }] } }
        }),
    );
    let server = HttpServer::start_with_token(&dir, "metrics-secret", &["--config", &config]);
    let client = server.client_with_token("metrics-secret").await;

    let ok = execute(&client, "return (await tools.toy.add({ a: 1, b: 2 })).sum;").await;
    assert_eq!(ok.result(), &json!(3), "{ok:?}");
    let refused = execute(&client, "return tools.toy.fail({ reason: 'x' });").await;
    assert_eq!(refused.error_kind(), "policy", "{refused:?}");
    let failed = execute(&client, "await tools.toy.add({ a: 'one', b: 2 });").await;
    assert_eq!(failed.error_kind(), "tool", "{failed:?}");
    let timed_out = common::execute_on(
        &client,
        json!({ "code": "while (true) {}", "timeoutMs": 100 }),
    )
    .await;
    assert_eq!(timed_out.error_kind(), "timeout", "{timed_out:?}");

    let (status, _, body) = scrape(&server.url("/metrics"), None).await;
    assert_eq!(
        status, 401,
        "the metrics need the token like every route: {body}"
    );
    let (status, content_type, text) =
        scrape(&server.url("/metrics"), Some("metrics-secret")).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    // An unnamed token's principal is named by its hash.
    let who = {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(b"metrics-secret");
        format!(
            "bearer:{:02x}{:02x}{:02x}{:02x}",
            hash[0], hash[1], hash[2], hash[3]
        )
    };
    for (series, value) in [
        (
            &*format!(
                r#"codemode_executions_total{{principal="{who}",transport="http",outcome="ok",kind="none"}}"#
            ),
            1.0,
        ),
        (
            &*format!(
                r#"codemode_executions_total{{principal="{who}",transport="http",outcome="error",kind="policy"}}"#
            ),
            1.0,
        ),
        (
            &*format!(
                r#"codemode_executions_total{{principal="{who}",transport="http",outcome="error",kind="tool"}}"#
            ),
            1.0,
        ),
        (
            &*format!(
                r#"codemode_executions_total{{principal="{who}",transport="http",outcome="error",kind="timeout"}}"#
            ),
            1.0,
        ),
        (
            r#"codemode_execution_duration_seconds_count{outcome="ok"}"#,
            1.0,
        ),
        (
            r#"codemode_execution_duration_seconds_count{outcome="error"}"#,
            3.0,
        ),
        (
            r#"codemode_tool_calls_total{namespace="toy",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"codemode_tool_calls_total{namespace="toy",outcome="error"}"#,
            1.0,
        ),
        (
            r#"codemode_tool_call_duration_seconds_count{namespace="toy"}"#,
            2.0,
        ),
        (
            r#"codemode_policy_decisions_total{decision="allowed"}"#,
            1.0,
        ),
        (
            r#"codemode_policy_decisions_total{decision="refused: invalid arguments"}"#,
            1.0,
        ),
        (
            r#"codemode_policy_decisions_total{decision="refused before running"}"#,
            1.0,
        ),
        (r#"codemode_limits_hit_total{limit="timeout"}"#, 1.0),
        (
            r#"codemode_upstream_up{upstream="toy",transport="stdio"}"#,
            1.0,
        ),
        ("codemode_executions_in_flight", 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    }
    let tools = sample(
        &text,
        r#"codemode_upstream_tools{upstream="toy",transport="stdio"}"#,
    );
    assert!(tools.is_some_and(|n| n >= 5.0), "{text}");
    // Process isolation (the default): the pool's gauges are there.
    assert!(sample(&text, "codemode_workers_ready").is_some(), "{text}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listener_serves_a_server_on_stdio() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = common::start(&[
        "--isolation",
        "none",
        "--metrics",
        &format!("127.0.0.1:{port}"),
    ])
    .await;
    let ran = server.execute("return 6 * 7;").await;
    assert_eq!(ran.result(), &json!(42));
    let (status, _, text) = scrape(&format!("http://127.0.0.1:{port}/metrics"), None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        sample(
            &text,
            r#"codemode_executions_total{principal="local",transport="stdio",outcome="ok",kind="none"}"#
        ),
        Some(1.0),
        "{text}"
    );
    // The listener answers nothing but metrics and health.
    let other = reqwest::get(format!("http://127.0.0.1:{port}/mcp"))
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
    server.assert_alive().await;
}

#[test]
fn metrics_on_a_public_address_need_a_token() {
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--isolation", "none", "--metrics", "0.0.0.0:0"])
        .env_remove("CODEMODE_AUTH_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to serve on 0.0.0.0:0 without authentication")
            && stderr.contains("--auth-token-file"),
        "{stderr}"
    );
}

/// A server over HTTP with these anomaly thresholds (the other flags off unless given),
/// an audit log, and `extra` config.
fn flagging_server(dir: &Path, anomalies: Value, extra: Value) -> (HttpServer, std::path::PathBuf) {
    let mut thresholds = json!({
        "rate": { "minimum": 0 },
        "limitHits": { "windowSecs": 60, "count": 0 },
        "repeats": { "windowSecs": 60, "count": 0 },
        "denied": { "windowSecs": 60, "count": 0 },
        "newEgressHosts": false
    });
    for (key, value) in anomalies.as_object().unwrap() {
        thresholds[key] = value.clone();
    }
    let mut config = json!({ "codemode": { "anomalies": thresholds } });
    for (key, value) in extra.as_object().unwrap() {
        config["codemode"][key] = value.clone();
    }
    let audit = dir.join("audit.jsonl");
    let path = common::write_config(dir, &config);
    let server = HttpServer::start(&[
        "--isolation",
        "none",
        "--config",
        &path,
        "--audit-log",
        audit.to_str().unwrap(),
    ]);
    (server, audit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_executions_is_flagged_as_rate_once() {
    let dir = common::scratch_dir("flag-rate");
    let (server, audit) = flagging_server(
        &dir,
        json!({ "rate": { "windowSecs": 60, "minimum": 8, "factor": 5 } }),
        json!({}),
    );
    let client = server.client().await;
    for i in 0..10 {
        execute(&client, &format!("return {i};")).await;
    }
    let flags = audit_flags(&audit);
    let raised: Vec<usize> = (0..flags.len()).filter(|i| !flags[*i].is_empty()).collect();
    assert_eq!(raised, [7], "{flags:?}");
    assert_eq!(flags[7], ["rate"]);
    let (_, _, text) = scrape(&server.url("/metrics"), None).await;
    assert_eq!(
        sample(&text, r#"codemode_anomalies_total{flag="rate"}"#),
        Some(1.0),
        "{text}"
    );
    let needles = ["anomaly: 8 executions in the last 60 s", "flag=\"rate\""];
    let log = server.log_containing(&needles);
    assert!(needles.iter().all(|n| log.contains(n)), "{log}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_program_in_a_tight_loop_is_flagged_as_repeat() {
    let dir = common::scratch_dir("flag-repeat");
    let (server, audit) = flagging_server(
        &dir,
        json!({ "repeats": { "windowSecs": 60, "count": 3 } }),
        json!({}),
    );
    let client = server.client().await;
    for code in [
        "return 'a';",
        "return 'a';",
        "return 'b';",
        "return 'a';",
        "return 'b';",
    ] {
        execute(&client, code).await;
    }
    assert_eq!(
        audit_flags(&audit),
        [vec![], vec![], vec![], vec!["repeat".to_string()], vec![]]
    );
    let log = server.log_containing(&["ran 3 times in the last 60 s"]);
    assert!(log.contains("ran 3 times in the last 60 s"), "{log}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_limit_hits_are_flagged() {
    let dir = common::scratch_dir("flag-limits");
    let (server, audit) = flagging_server(
        &dir,
        json!({ "limitHits": { "windowSecs": 60, "count": 2 } }),
        json!({}),
    );
    let client = server.client().await;
    let spin = json!({ "code": "while (true) {}", "timeoutMs": 50 });
    assert_eq!(
        common::execute_on(&client, spin.clone()).await.error_kind(),
        "timeout"
    );
    execute(&client, "return 1;").await;
    assert_eq!(
        common::execute_on(&client, spin).await.error_kind(),
        "timeout"
    );
    assert_eq!(
        audit_flags(&audit),
        [vec![], vec![], vec!["limit-hits".to_string()]]
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_refusals_is_flagged_as_denied_burst() {
    let dir = common::scratch_dir("flag-denied");
    let (server, audit) = flagging_server(
        &dir,
        json!({ "denied": { "windowSecs": 60, "count": 3 } }),
        json!({}),
    );
    let client = server.client().await;
    // fetch is off on this server: the pre-flight scan refuses each of them.
    for host in ["a.example", "b.example", "c.example"] {
        let ran = execute(&client, &format!("return fetch('https://{host}/');")).await;
        assert_eq!(ran.error_kind(), "policy", "{ran:?}");
    }
    assert_eq!(
        audit_flags(&audit),
        [vec![], vec![], vec!["denied-burst".to_string()]]
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_to_a_new_host_is_flagged_and_remembered_across_restarts() {
    let web = common::web::start().await;
    let dir = common::scratch_dir("flag-egress");
    let egress = json!({ "egress": { "rules": [
        { "url": format!("http://127.0.0.1:{}/**", web.addr.port()), "allowPrivate": true },
        { "url": format!("http://localhost:{}/**", web.addr.port()), "allowPrivate": true }
    ] } });
    let fetch = |url: String| format!("return (await fetch({url:?})).status;");
    let (server, audit) = flagging_server(&dir, json!({ "newEgressHosts": true }), egress.clone());
    let client = server.client().await;
    for url in [web.url("/json"), web.url("/json"), web.named("/json")] {
        let ran = execute(&client, &fetch(url)).await;
        assert_eq!(ran.result(), &json!(200), "{ran:?}");
    }
    assert_eq!(
        audit_flags(&audit),
        [
            vec!["new-egress-host".to_string()],
            vec![],
            vec!["new-egress-host".to_string()]
        ]
    );
    let log = server.log_containing(&["the first fetch to localhost"]);
    assert!(log.contains("the first fetch to localhost"), "{log}");
    client.cancel().await.unwrap();
    drop(server);

    // Restarted on the same audit log: the hosts fetched before are not new.
    let (server, audit) = flagging_server(&dir, json!({ "newEgressHosts": true }), egress);
    let client = server.client().await;
    execute(&client, &fetch(web.url("/json"))).await;
    assert_eq!(audit_flags(&audit).last().unwrap(), &Vec::<String>::new());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn bad_thresholds_name_their_key() {
    let dir = common::scratch_dir("flag-config");
    let path = common::write_config(
        &dir,
        &json!({ "codemode": { "anomalies": { "rate": { "windowSecs": 0 } } } }),
    );
    let out = std::process::Command::new(common::BIN)
        .args(["check-config", &path])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(
        text.contains("codemode.anomalies.rate.windowSecs: 0 is out of range: allowed 1 to 86400"),
        "{text}"
    );
}

/// A local OTLP/HTTP collector (JSON): keeps every span it receives.
async fn collector() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
) {
    let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let request: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                for resource in request["resourceSpans"].as_array().unwrap() {
                    let service = resource["resource"]["attributes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|a| a["key"] == "service.name")
                        .map(|a| a["value"]["stringValue"].clone());
                    for scope in resource["scopeSpans"].as_array().unwrap() {
                        for span in scope["spans"].as_array().unwrap() {
                            let mut span = span.clone();
                            span["service"] = service.clone().unwrap_or(Value::Null);
                            kept.lock().unwrap().push(span);
                        }
                    }
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, spans)
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_the_collector_and_the_trace_context_reaches_upstreams() {
    let (addr, spans) = collector().await;
    let dir = common::scratch_dir("traces");
    let config = common::write_config(
        &dir,
        &json!({
            "mcpServers": { "toy": common::toy() },
            "codemode": { "telemetry": {
                "otlpEndpoint": format!("http://{addr}"),
                "otlpProtocol": "http/json",
                "serviceName": "codemode-under-test"
            } }
        }),
    );
    let server = HttpServer::start_with_env(
        &["--config", &config],
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    let client = server.client().await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut params = rmcp::model::CallToolRequestParams::new("execute_code").with_arguments(
        json!({ "code": "const seen = await tools.toy.traceparent({});\nawait tools.toy.add({ a: 1, b: 2 });\nreturn seen;" })
            .as_object()
            .unwrap()
            .clone(),
    );
    let mut meta = rmcp::model::RequestMetaObject::new();
    meta.insert(
        "traceparent".into(),
        json!(format!("00-{caller_trace}-{caller_span}-01")),
    );
    params.meta = Some(meta);
    let ran = common::unpack(client.call_tool(params).await.unwrap());
    // A str-returning Python tool answers {"result": ...} as its structured content.
    let seen = ran.result()["result"]
        .as_str()
        .unwrap_or_else(|| panic!("the upstream's traceparent: {ran:?}"))
        .to_string();
    let parts: Vec<&str> = seen.split('-').collect();
    assert_eq!(parts.len(), 4, "{seen}");
    assert_eq!(
        parts[1], caller_trace,
        "the upstream joined the caller's trace: {seen}"
    );
    assert_ne!(parts[2], caller_span);

    // The exporter sends in batches every 100 ms here.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let collected = loop {
        let collected = spans.lock().unwrap().clone();
        if collected.len() >= 3 || std::time::Instant::now() > deadline {
            break collected;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let named = |name: &str| {
        collected
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no span {name} in {collected:#?}"))
            .clone()
    };
    let execution = named("tools/call execute_code");
    let traced = named("tools/call toy.traceparent");
    let add = named("tools/call toy.add");
    assert_eq!(execution["traceId"], caller_trace, "{execution:#}");
    assert_eq!(execution["parentSpanId"], caller_span, "{execution:#}");
    assert_eq!(execution["service"], "codemode-under-test");
    assert_eq!(
        attribute(&execution, "codemode.calls").unwrap()["intValue"],
        json!("2"),
        "{execution:#}"
    );
    for call in [&traced, &add] {
        assert_eq!(call["traceId"], caller_trace);
        assert_eq!(call["parentSpanId"], execution["spanId"], "{call:#}");
        assert_eq!(
            attribute(call, "codemode.decision").unwrap()["stringValue"],
            "allowed"
        );
    }
    assert_eq!(
        traced["spanId"], parts[2],
        "the upstream's parent is the call's span"
    );
    assert_eq!(
        attribute(&add, "gen_ai.tool.name").unwrap()["stringValue"],
        "add"
    );
    // No program text, arguments or results leave in spans.
    let everything = serde_json::to_string(&collected).unwrap();
    assert!(!everything.contains("const seen"), "{everything}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_unknown_otlp_protocol_is_refused_with_the_choices() {
    let dir = common::scratch_dir("traces-config");
    let path = common::write_config(
        &dir,
        &json!({ "codemode": { "telemetry": { "otlpEndpoint": "http://127.0.0.1:1", "otlpProtocol": "grpc" } } }),
    );
    let out = std::process::Command::new(common::BIN)
        .args(["run", "--isolation", "none", "--config", &path, "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("otlpProtocol \"grpc\" is not supported: use \"http/protobuf\""),
        "{stderr}"
    );
}
