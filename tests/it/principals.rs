//! Who is asking, through the real binary: named tokens made by `codemode-mcp token`, each
//! its own principal in the audit log and the metrics, the operator's scope, a token file
//! that names its bad line, and an OAuth resource server's metadata and challenges.

use crate::common;

use std::process::Command;

use common::{
    BIN,
    http::{HttpServer, execute, initialize_as, initialize_body, post_mcp},
};

/// `codemode-mcp token NAME --scope ...`: the token, and the line of the token file.
pub(crate) fn make_token(name: &str, scopes: &[&str]) -> (String, String) {
    let mut command = Command::new(BIN);
    command.args(["token", name]);
    for scope in scopes {
        command.args(["--scope", scope]);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("{label} in {text}"))
            .to_string()
    };
    (field("token: "), field("line for the token file: "))
}

fn audit_records(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn each_named_token_is_a_principal_in_the_audit_log_and_the_metrics() {
    let dir = common::scratch_dir("principals");
    let (alice, alice_line) = make_token("alice", &["codemode:operator"]);
    let (bob, bob_line) = make_token("bob", &[]);
    assert!(
        !alice_line.contains(&alice),
        "the file keeps a hash, not the token"
    );
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        format!("# the operator\n{alice_line}\n{bob_line}\n"),
    )
    .unwrap();
    let log = dir.join("audit.jsonl");
    let server = HttpServer::start(&[
        "--auth-token-file",
        tokens.to_str().unwrap(),
        "--audit-log",
        log.to_str().unwrap(),
    ]);
    for (token, code) in [(&alice, "return 1"), (&bob, "return 2")] {
        let client = server.client_with_token(token).await;
        let ran = execute(client.peer(), code).await;
        assert!(!ran.is_error, "{}", ran.text);
        client.cancel().await.unwrap();
    }
    let records = audit_records(&log);
    let principals: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r["code"].as_str().unwrap(),
                r["origin"]["principal"].as_str(),
            )
        })
        .collect();
    assert!(
        principals.contains(&("return 1", Some("alice"))),
        "{principals:?}"
    );
    assert!(
        principals.contains(&("return 2", Some("bob"))),
        "{principals:?}"
    );

    let http = reqwest::Client::new();
    let metrics = |token: &str| {
        http.get(server.url("/metrics"))
            .bearer_auth(token.to_string())
            .send()
    };
    let refused = metrics(&bob).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("codemode:operator"));
    let shown = metrics(&alice).await.unwrap();
    assert_eq!(shown.status(), 200);
    let text = shown.text().await.unwrap();
    for name in ["alice", "bob"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("codemode_executions_total{")
                    && l.contains(&format!("principal=\"{name}\""))),
            "{name} in\n{text}"
        );
    }
    // The hash in the file is not a token.
    let hash = bob_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_start_matches("sha256:");
    let wrong = initialize_as(&server, hash).await;
    assert_eq!(wrong.status(), 401);
}

#[test]
fn a_bad_token_file_names_its_line_and_the_server_does_not_start() {
    let dir = common::scratch_dir("bad-tokens");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, "# ok\nci sha256:1234\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "--http",
            "127.0.0.1:0",
            "--auth-token-file",
            tokens.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the token file, line 2") && stderr.contains("codemode-mcp token ci"),
        "{stderr}"
    );
}

#[test]
fn a_run_on_this_machine_is_the_local_principal() {
    let dir = common::scratch_dir("local-principal");
    let log = dir.join("audit.jsonl");
    let job = dir.join("job.js");
    std::fs::write(&job, "return 5").unwrap();
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        r#"{"mcpServers": {}, "codemode": {"principal": "ci-runner"}}"#,
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            job.to_str().unwrap(),
            "--audit-log",
            log.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[]);
    run(&["--config", config.to_str().unwrap()]);
    let names: Vec<_> = audit_records(&log)
        .iter()
        .map(|r| r["origin"]["principal"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        names,
        [Some("local".to_string()), Some("ci-runner".to_string())]
    );
    std::fs::write(
        &config,
        r#"{"mcpServers": {}, "codemode": {"principal": "a b"}}"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "run",
            job.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("codemode.principal"),
        "{stderr}"
    );
}

/// An OAuth resource server: its metadata (RFC 9728) needs no token, a request without one
/// is told where to get one, a token that is not a JWT is invalid, and while the issuer's
/// keys cannot be had a JWT gets 503 (nobody can say whether it is good), not 401.
#[tokio::test]
async fn an_oauth_resource_server_says_where_tokens_come_from() {
    // Nothing listens on port 1: the issuer is unreachable.
    let issuer = "http://127.0.0.1:1";
    let resource = "http://127.0.0.1:9/mcp";
    let server = HttpServer::start(&[
        "--oauth-issuer",
        issuer,
        "--oauth-resource",
        resource,
        "--oauth-scope",
        "mcp:execute",
    ]);
    let metadata_url = "http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp";
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let document: serde_json::Value = reqwest::get(server.url(path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(document["resource"], resource, "{path}");
        assert_eq!(
            document["authorization_servers"],
            serde_json::json!([issuer])
        );
        assert_eq!(
            document["scopes_supported"],
            serde_json::json!(["mcp:execute"])
        );
    }
    let missing = post_mcp(&server, initialize_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.headers()["www-authenticate"],
        format!("Bearer realm=\"codemode-mcp\", resource_metadata=\"{metadata_url}\", scope=\"mcp:execute\"").as_str()
    );
    let not_jwt = initialize_as(&server, "opaque").await;
    assert_eq!(not_jwt.status(), 401);
    let challenge = not_jwt.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("error=\"invalid_token\"") && challenge.contains("resource_metadata="),
        "{challenge}"
    );
    // A well-formed RS256 JWT (its signature cannot be checked: the keys are out of reach).
    let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ4In0.c2ln";
    let unavailable = initialize_as(&server, jwt).await;
    assert_eq!(unavailable.status(), 503);
    let body = unavailable.text().await.unwrap();
    assert!(
        body.contains("cannot check access tokens now") && body.contains("127.0.0.1:1"),
        "{body}"
    );
    // An HS256 token is refused outright: the issuer's keys are public.
    let hs = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
    let refused = initialize_as(&server, hs).await;
    assert_eq!(refused.status(), 401);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("public-key algorithms")
    );
    // The probe still needs no token.
    assert_eq!(
        reqwest::get(server.url("/healthz")).await.unwrap().status(),
        200
    );
}
