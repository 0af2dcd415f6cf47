//! `fetch` through the real server: off by default; when rules allow URLs, only those are
//! reached, private addresses are refused after DNS and on every redirect, responses are
//! capped in size and time, secret headers reach the server but never the program, and
//! fetches count against their own budget. The pre-flight scan refuses literal URLs
//! outside the rules before anything runs.

use crate::common;

use common::{BIN, Server, scratch_dir, web, write_config};
use serde_json::{Value, json};

/// Starts the server with `egress` as `codemode.egress` (data-flow guard off unless
/// `policy` says otherwise) and `env` in its environment.
async fn serve(
    egress: Value,
    policy: Value,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Server, String) {
    let dir = scratch_dir("egress");
    let audit = dir.join("audit.jsonl").to_string_lossy().into_owned();
    let config = write_config(
        &dir,
        &json!({ "codemode": { "egress": egress, "policy": policy, "audit": { "path": audit } } }),
    );
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(["serve", "--config", &config])
        .args(args)
        .env("CODEMODE_LOG", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    let transport = rmcp::transport::TokioChildProcess::new(command).unwrap();
    let pid = transport.id().unwrap();
    let client = rmcp::ServiceExt::serve((), transport).await.unwrap();
    (Server { client, pid }, audit)
}

fn no_guard() -> Value {
    json!({ "dataFlow": { "mode": "off" } })
}

fn audit_records(path: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn fetch_is_off_by_default_and_a_literal_url_fails_before_running() {
    let server = common::start(&[]).await;
    let ran = server
        .execute("return [typeof fetch, typeof Request, typeof Response, typeof Headers];")
        .await;
    assert_eq!(
        ran.result(),
        &json!(["undefined", "undefined", "undefined", "undefined"])
    );
    let ran = server
        .execute("console.log('never');\nconst r = await fetch(\"https://example.com/x\");\nreturn r.status;")
        .await;
    assert_eq!(ran.error_kind(), "policy", "{ran:?}");
    assert_eq!(ran.position(), (2, 17), "{ran:?}");
    assert!(ran.error_message().contains("fetch is off"), "{ran:?}");
    assert!(!ran.text.contains("never"), "nothing ran: {ran:?}");
    server.assert_alive().await;
}

#[tokio::test]
async fn allowed_urls_are_fetched_with_the_web_api_shape() {
    let web = web::start().await;
    let rule = format!("http://127.0.0.1:{}/**", web.addr.port());
    let (server, audit) = serve(
        json!({ "rules": [{ "url": rule, "allowPrivate": true }] }),
        no_guard(),
        &[],
        &[],
    )
    .await;
    let code = format!(
        r#"const r = await fetch("{json}");
const data = await r.json();
const posted = await (await fetch(new Request("{echo}", {{ method: "POST", body: JSON.stringify({{ n: 1 }}), headers: {{ "Content-Type": "application/json" }} }}))).json();
const bytes = new Uint8Array(await (await fetch("{bytes}")).arrayBuffer());
const h = new Headers([["X-A", "1"]]); h.append("x-a", "2");
return {{ status: r.status, ok: r.ok, type: r.headers.get("content-type"), data, used: r.bodyUsed,
  method: posted.method, body: posted.body, ctype: posted.headers["content-type"], bytes: [...bytes], joined: h.get("X-A"),
  made: Response.json({{ a: 1 }}).headers.get("content-type") }};"#,
        json = web.url("/json"),
        echo = web.url("/echo"),
        bytes = web.url("/bytes"),
    );
    let ran = server.execute(&code).await;
    assert!(!ran.is_error, "{ran:?}");
    assert_eq!(
        ran.result(),
        &json!({ "status": 200, "ok": true, "type": "application/json", "data": { "items": [1, 2, 3] }, "used": true,
            "method": "POST", "body": "{\"n\":1}", "ctype": "application/json", "bytes": [0, 255, 1, 2], "joined": "1, 2",
            "made": "application/json" })
    );
    let calls = ran.structured["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[0]["tool"], "fetch");
    assert!(
        calls
            .iter()
            .any(|c| c["target"] == json!(format!("POST {}", web.url("/echo")))),
        "{calls:?}"
    );
    let records = audit_records(&audit);
    let last = records.last().unwrap();
    assert_eq!(last["calls"].as_array().unwrap().len(), 3);
    assert_eq!(last["scan"]["urls"].as_array().unwrap().len(), 3, "{last}");
    server.assert_alive().await;
}

#[tokio::test]
async fn urls_outside_the_rules_are_refused_before_or_at_the_call() {
    let web = web::start().await;
    let rule = format!("http://127.0.0.1:{}/json", web.addr.port());
    let (server, _) = serve(
        json!({ "rules": [{ "url": rule, "allowPrivate": true }] }),
        no_guard(),
        &[],
        &[],
    )
    .await;
    // A literal URL outside the rules: the pre-flight scan refuses, with the position.
    let ran = server
        .execute(&format!(
            "const ok = 1;\n  await fetch('{}');",
            web.url("/echo")
        ))
        .await;
    assert_eq!(ran.error_kind(), "policy", "{ran:?}");
    assert_eq!(ran.position(), (2, 9), "{ran:?}");
    assert!(
        ran.error_message().contains("not in the egress allow-list"),
        "{ran:?}"
    );
    assert!(
        ran.error_message().contains(&rule),
        "names what is allowed: {ran:?}"
    );
    // A computed one: refused at call time, as a TypeError the program can catch.
    let ran = server
        .execute(&format!(
            "const path = ['ec', 'ho'].join('');\ntry {{ await fetch('{}' + path); return 'reached'; }} catch (e) {{ return [e.name, e.message]; }}",
            web.url("/")
        ))
        .await;
    assert_eq!(ran.result()[0], "TypeError", "{ran:?}");
    assert!(
        ran.result()[1]
            .as_str()
            .unwrap()
            .contains("not in the egress allow-list"),
        "{ran:?}"
    );
    for scheme in ["file:///etc/passwd", "ftp://x/y"] {
        let ran = server
            .execute(&format!("const u = ['{scheme}'][0];\nreturn await fetch(u).then(() => 'reached', (e) => e.message);"))
            .await;
        assert!(ran.result().as_str().unwrap().contains("scheme"), "{ran:?}");
    }
    server.assert_alive().await;
}

#[tokio::test]
async fn private_addresses_are_refused_after_dns_and_on_redirects() {
    let web = web::start().await;
    let port = web.addr.port();
    let (server, _) = serve(
        json!({ "rules": [
            { "url": format!("http://127.0.0.1:{port}/redirect"), "allowPrivate": true },
            { "url": format!("http://localhost:{port}/**") },
            { "url": format!("http://[::1]:{port}/**") },
            { "url": "http://169.254.169.254/**" },
        ] }),
        no_guard(),
        &[],
        &[],
    )
    .await;
    let attempt = |url: String| {
        format!(
            "const u = ['{url}'][0];\nreturn await fetch(u).then((r) => 'reached ' + r.status, (e) => e.message);"
        )
    };
    // A name that resolves to loopback.
    let ran = server.execute(&attempt(web.named("/json"))).await;
    let message = ran.result().as_str().unwrap().to_string();
    assert!(
        message.contains("resolves to") && message.contains("loopback"),
        "{message}"
    );
    assert!(
        message.contains("allowPrivate"),
        "says how to allow it: {message}"
    );
    // IP literals: loopback v6, the cloud metadata address.
    let ran = server
        .execute(&attempt(format!("http://[::1]:{port}/json")))
        .await;
    assert!(
        ran.result().as_str().unwrap().contains("loopback"),
        "{ran:?}"
    );
    let ran = server
        .execute(&attempt("http://169.254.169.254/latest/meta-data/".into()))
        .await;
    assert!(
        ran.result().as_str().unwrap().contains("link-local"),
        "{ran:?}"
    );
    // An allowed URL that redirects into loopback through a name, and one that redirects
    // outside the rules.
    let ran = server
        .execute(&attempt(format!(
            "{}?to={}",
            web.url("/redirect"),
            web.named("/json")
        )))
        .await;
    assert!(
        ran.result().as_str().unwrap().contains("loopback"),
        "{ran:?}"
    );
    let ran = server
        .execute(&attempt(format!(
            "{}?to={}",
            web.url("/redirect"),
            web.url("/json")
        )))
        .await;
    assert!(
        ran.result()
            .as_str()
            .unwrap()
            .contains("redirected to a URL it may not reach"),
        "{ran:?}"
    );
    server.assert_alive().await;
}

#[tokio::test]
async fn secret_headers_reach_the_server_but_never_the_program() {
    let web = web::start().await;
    let rule = format!("http://127.0.0.1:{}/**", web.addr.port());
    let secret = "ghp_s3cretValue1234567890";
    let (server, _) = serve(
        json!({ "rules": [{ "url": rule, "allowPrivate": true, "headers": { "Authorization": "Bearer ${TEST_TOKEN}" } }] }),
        no_guard(),
        &[("TEST_TOKEN", secret)],
        &[],
    )
    .await;
    let code = format!(
        r#"const r = await fetch("{echo}", {{ headers: {{ Authorization: "Bearer mine" }} }});
const text = await r.text();
const req = new Request("{echo}");
return {{ text, reqAuth: req.headers.get("authorization"), all: [...r.headers].join(";") }};"#,
        echo = web.url("/echo")
    );
    let ran = server.execute(&code).await;
    assert!(!ran.is_error, "{ran:?}");
    let shown = ran.result().to_string();
    assert!(
        !shown.contains("s3cret"),
        "the program saw the secret: {shown}"
    );
    assert!(shown.contains("[withheld]"), "{shown}");
    assert_eq!(ran.result()["reqAuth"], Value::Null);
    assert_eq!(
        web.seen.authorizations.lock().unwrap().as_slice(),
        [format!("Bearer {secret}")],
        "the host's header replaced the program's"
    );
    server.assert_alive().await;
}

#[tokio::test]
async fn size_time_and_count_caps_hold() {
    let web = web::start().await;
    let rule = format!("http://127.0.0.1:{}/**", web.addr.port());
    // A 3 s egress timeout: the large body and the budget's five small fetches each finish
    // well inside it on a loaded machine, while /slow (60 s) can only end by it.
    let (server, _) = serve(
        json!({ "rules": [{ "url": rule, "allowPrivate": true }], "maxResponseKiB": 1024, "timeoutMs": 3000 }),
        no_guard(),
        &[],
        &["--max-fetches", "3"],
    )
    .await;
    let ran = server
        .execute(&format!(
            "return await fetch('{}').then(() => 'reached', (e) => e.message);",
            web.url("/big")
        ))
        .await;
    assert!(
        ran.result()
            .as_str()
            .unwrap()
            .contains("larger than 1024 KiB"),
        "{ran:?}"
    );
    let ran = server
        .execute(&format!(
            "return await fetch('{}').then(() => 'reached', (e) => e.message);",
            web.url("/slow")
        ))
        .await;
    assert!(
        ran.result()
            .as_str()
            .unwrap()
            .contains("longer than 3000 ms"),
        "{ran:?}"
    );
    assert!(ran.duration_ms() < 10_000, "{ran:?}");
    let ran = server
        .execute(&format!(
            "for (let i = 0; i < 5; i++) await fetch('{}');\nreturn 'all';",
            web.url("/json")
        ))
        .await;
    assert_eq!(ran.error_kind(), "budget", "{ran:?}");
    assert!(
        ran.error_message().contains("made its 3 fetches"),
        "{ran:?}"
    );
    server.assert_alive().await;
}

#[tokio::test]
async fn data_flow_guard_stops_sending_out_after_reading_untrusted_data() {
    let web = web::start().await;
    let rule = format!("http://127.0.0.1:{}/**", web.addr.port());
    let code = format!(
        "const first = await (await fetch('{json}')).json();\ntry {{ await fetch('{echo}', {{ method: 'POST', body: JSON.stringify(first) }}); return 'sent'; }} catch (e) {{ return e.message; }}",
        json = web.url("/json"),
        echo = web.url("/echo")
    );
    for (mode, says) in [
        (json!({}), "this client cannot ask"),
        (
            json!({ "dataFlow": { "mode": "deny" } }),
            "refuses such calls",
        ),
    ] {
        let (server, audit) = serve(
            json!({ "rules": [{ "url": rule, "allowPrivate": true }] }),
            mode,
            &[],
            &[],
        )
        .await;
        let ran = server.execute(&code).await;
        let message = ran.result().as_str().unwrap_or_default().to_string();
        assert!(
            message.contains("read untrusted data (from fetch GET"),
            "{ran:?}"
        );
        assert!(message.contains(says), "{ran:?}");
        let last = audit_records(&audit).pop().unwrap();
        let decisions: Vec<&str> = last["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["decision"].as_str().unwrap())
            .collect();
        assert_eq!(decisions[0], "allowed");
        assert!(decisions[1].starts_with("refused"), "{decisions:?}");
        assert_eq!(
            web.seen.echoes.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "nothing was sent"
        );
    }
    // Marked trusted, the same program sends.
    let (server, _) = serve(
        json!({ "rules": [{ "url": rule, "allowPrivate": true }] }),
        json!({ "dataFlow": { "notSources": ["fetch"] } }),
        &[],
        &[],
    )
    .await;
    assert_eq!(server.execute(&code).await.result(), &json!("sent"));
}

#[test]
fn bad_egress_rules_stop_the_server_and_check_config_says_why() {
    let dir = scratch_dir("egress-bad");
    for (rules, says) in [
        (
            json!([{ "url": "api.github.com" }]),
            "codemode.egress.rules[0].url",
        ),
        (
            json!([{ "url": "https://x.com", "headers": { "Authorization": "${NOT_SET_ANYWHERE}" } }]),
            "rules[0].headers.Authorization",
        ),
    ] {
        let config = write_config(
            &dir,
            &json!({ "codemode": { "egress": { "rules": rules } } }),
        );
        let out = std::process::Command::new(BIN)
            .args(["check-config", &config])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
    }
}

#[tokio::test]
async fn an_uncaught_refusal_names_the_programs_line() {
    let (server, _) = serve(
        json!({ "rules": [{ "url": "https://example.com/**" }] }),
        no_guard(),
        &[],
        &[],
    )
    .await;
    let ran = server
        .execute("const u = ['https://example.org/x'][0];\nconst a = 1;\nawait fetch(u);")
        .await;
    assert_eq!(ran.error_kind(), "runtime", "{ran:?}");
    assert_eq!(ran.position().0, 3, "{ran:?}");
    assert!(
        ran.error_message().starts_with("TypeError: fetch refused"),
        "{ran:?}"
    );
}
