//! Least privilege per principal (`codemode.tenants`), through the real binary: principals
//! with different overlays over the same upstream each see and call only their own tools
//! (declarations, `search_tools`, resources, errors), fetch only their own URLs and run
//! under their own limits; over HTTP with named tokens (legacy sessions and 2026-07-28
//! requests) and over stdio, where the overlay names the configured principal.

use crate::common;

use common::{
    Server,
    http::{HttpServer, answer_of, execute, post_modern},
};
use rmcp::{
    RoleClient,
    model::{CallToolRequestParams, ProtocolVersion, ReadResourceRequestParams},
    service::{ClientLifecycleMode, ClientServiceExt, RunningService},
    transport::TokioChildProcess,
};
use serde_json::{Value, json};

/// Two of the toy's tools as their declarations begin.
const ADD: &str = "function add(";
const TRACEPARENT: &str = "function traceparent(";

fn config(dir: &std::path::Path) -> String {
    common::write_config(
        dir,
        &json!({
            "mcpServers": { "toy": common::toy() },
            "codemode": {
                "skills": { "path": dir.join("skills") },
                // Nothing listens there: the URL is only ever checked, never fetched.
                "egress": { "rules": [{ "url": "http://127.0.0.1:9/**", "allowPrivate": true }] },
                "tenants": [
                    {
                        "name": "adders",
                        "principals": ["alice"],
                        "rules": [{ "tools": "toy.add", "action": "allow" }],
                        "default": "deny",
                        "egress": ["http://127.0.0.1:9/public/**"],
                        "limits": { "toolCalls": 2 },
                        "quotas": { "toolCallsPerDay": 1000 }
                    },
                    {
                        "principals": ["bob"],
                        "rules": [{ "tools": "toy.add", "action": "deny" }],
                        "egress": []
                    },
                    {
                        "scopes": ["team:no-fail"],
                        "rules": [{ "tools": "toy.fail", "action": "deny" }]
                    }
                ]
            }
        }),
    )
}

async fn list_skills(server: &HttpServer, token: &str) -> String {
    let client = server.client_with_token(token).await;
    let listed = client
        .peer()
        .call_tool(CallToolRequestParams::new("list_skills"))
        .await
        .unwrap();
    client.cancel().await.unwrap();
    format!("{:?}", listed.content)
}

async fn description(client: &rmcp::Peer<RoleClient>) -> String {
    let tools = client.list_all_tools().await.unwrap();
    tools
        .iter()
        .find(|t| t.name == "execute_code")
        .and_then(|t| t.description.clone())
        .unwrap()
        .to_string()
}

async fn search(client: &rmcp::Peer<RoleClient>) -> String {
    let found = client
        .call_tool(
            CallToolRequestParams::new("search_tools").with_arguments(
                json!({"query": "", "detail": "names", "limit": 200})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    found
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn toy_declarations(client: &rmcp::Peer<RoleClient>) -> String {
    let read = client
        .read_resource(ReadResourceRequestParams::new("codemode://types/toy.d.ts"))
        .await
        .unwrap();
    serde_json::to_string(&read).unwrap()
}

#[tokio::test]
async fn each_principal_sees_calls_and_fetches_only_what_its_overlay_allows() {
    let dir = common::scratch_dir("tenants-http");
    let config = config(&dir);
    let (alice, alice_line) = crate::principals::make_token("alice", &[]);
    let (bob, bob_line) = crate::principals::make_token("bob", &[]);
    let (carol, carol_line) = crate::principals::make_token("carol", &["team:no-fail"]);
    let (dave, dave_line) = crate::principals::make_token("dave", &[]);
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        format!("{alice_line}\n{bob_line}\n{carol_line}\n{dave_line}\n"),
    )
    .unwrap();
    let server = HttpServer::start(&[
        "--config",
        &config,
        "--auth-token-file",
        tokens.to_str().unwrap(),
    ]);

    // alice: `toy.add` alone, two calls per execution, fetch under /public only.
    let client = server.client_with_token(&alice).await;
    let peer = client.peer();
    let described = description(peer).await;
    assert!(described.contains(ADD), "{described}");
    assert!(!described.contains(TRACEPARENT), "{described}");
    assert!(
        described.contains("http://127.0.0.1:9/public/**")
            && !described.contains("http://127.0.0.1:9/**"),
        "{described}"
    );
    let listed = search(peer).await;
    assert!(
        listed.contains("toy.add") && !listed.contains("toy.slow"),
        "{listed}"
    );
    let declared = toy_declarations(peer).await;
    assert!(
        declared.contains("add(") && !declared.contains("traceparent"),
        "{declared}"
    );
    let added = execute(peer, "return (await tools.toy.add({ a: 2, b: 3 })).sum;").await;
    assert_eq!(added.result(), &json!(5), "{}", added.text);
    // Hidden, not denied: named in the source, called by a computed name, or searched for
    // in the program, a tool alice may not see is one that does not exist.
    let named = execute(peer, "return await tools.toy.slow({ ms: 1 });").await;
    assert!(named.is_error, "{}", named.text);
    let computed = execute(
        peer,
        "const name = ['sl', 'ow'].join('');\ntry { await tools.toy[name]({ ms: 1 }); } catch (e) { return String(e.message); }\nreturn 'called';",
    )
    .await;
    let searched = execute(
        peer,
        "return (await tools.$search('')).map((hit) => hit.namespace + '.' + hit.tool);",
    )
    .await;
    assert_eq!(searched.result(), &json!(["toy.add"]), "{}", searched.text);
    for ran in [&named, &computed] {
        for hidden in ["deni", "policy", "traceparent", "slow(", "codemode.tenants"] {
            assert!(!ran.text.contains(hidden), "{hidden} in {}", ran.text);
        }
    }
    let over = execute(
        peer,
        "for (let i = 0; i < 3; i++) await tools.toy.add({ a: i, b: 0 });\nreturn 'all';",
    )
    .await;
    assert_eq!(over.error_kind(), "budget", "{}", over.text);
    assert!(
        over.error_message()
            .contains("codemode.tenants[0] (adders).limits.toolCalls"),
        "the refusal names the overlay's limit: {}",
        over.text
    );
    let refused = execute(peer, "return await fetch('http://127.0.0.1:9/private/x');").await;
    assert_eq!(refused.error_kind(), "policy", "{}", refused.text);
    assert!(
        refused
            .error_message()
            .contains("codemode.tenants[0] (adders).egress"),
        "{}",
        refused.text
    );
    client.cancel().await.unwrap();

    // bob: everything but `toy.add`, and no fetch at all.
    let client = server.client_with_token(&bob).await;
    let peer = client.peer();
    let described = description(peer).await;
    assert!(
        !described.contains(ADD) && described.contains(TRACEPARENT),
        "{described}"
    );
    assert!(!described.contains("`fetch` is on"), "{described}");
    let listed = search(peer).await;
    assert!(
        !listed.contains("toy.add") && listed.contains("toy.slow"),
        "{listed}"
    );
    let slow = execute(peer, "return await tools.toy.slow({ ms: 1 });").await;
    assert_eq!(slow.result()["result"], json!("done"), "{}", slow.text);
    let add = execute(peer, "return await tools.toy.add({ a: 1, b: 1 });").await;
    assert!(add.is_error, "{}", add.text);
    let fetched = execute(peer, "return await fetch('http://127.0.0.1:9/public/x');").await;
    assert_eq!(fetched.error_kind(), "policy", "{}", fetched.text);
    assert!(
        fetched
            .error_message()
            .contains("fetch is off for this principal"),
        "{}",
        fetched.text
    );
    client.cancel().await.unwrap();

    // carol, matched by her token's scope: all but `toy.fail`.
    let client = server.client_with_token(&carol).await;
    let listed = search(client.peer()).await;
    assert!(
        listed.contains("toy.add") && !listed.contains("toy.fail"),
        "{listed}"
    );
    client.cancel().await.unwrap();

    // dave, whom no overlay names: the server's own view.
    let client = server.client_with_token(&dave).await;
    let listed = search(client.peer()).await;
    assert!(
        listed.contains("toy.add") && listed.contains("toy.fail"),
        "{listed}"
    );
    let many = execute(
        client.peer(),
        "for (let i = 0; i < 3; i++) await tools.toy.add({ a: i, b: 0 });\nreturn 'all';",
    )
    .await;
    assert_eq!(many.result(), &json!("all"), "{}", many.text);
    client.cancel().await.unwrap();

    // Skills are shared: a principal whose rights are narrowed calls them but does not
    // change them, and sees only those its overlays show.
    let skill = |name: &str| {
        CallToolRequestParams::new("save_skill").with_arguments(
            json!({"name": name, "description": "Adds one.", "code": "return args.n + 1;"})
                .as_object()
                .unwrap()
                .clone(),
        )
    };
    let client = server.client_with_token(&bob).await;
    let offered: Vec<String> = client
        .peer()
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        offered.contains(&"list_skills".to_string())
            && !offered.contains(&"save_skill".to_string())
            && !offered.contains(&"delete_skill".to_string()),
        "{offered:?}"
    );
    // Called all the same, it refuses.
    let refused = client.peer().call_tool(skill("plus_one")).await.unwrap();
    assert_eq!(refused.is_error, Some(true));
    assert!(
        format!("{:?}", refused.content).contains("not save or delete"),
        "{refused:?}"
    );
    client.cancel().await.unwrap();
    let client = server.client_with_token(&dave).await;
    let saved = client.peer().call_tool(skill("plus_one")).await.unwrap();
    assert_ne!(saved.is_error, Some(true), "{saved:?}");
    client.cancel().await.unwrap();
    assert!(list_skills(&server, &bob).await.contains("plus_one"));
    assert!(
        !list_skills(&server, &alice).await.contains("plus_one"),
        "alice's overlay denies by default"
    );

    // A 2026-07-28 request (no session) is narrowed the same way, by its token alone.
    let modern = |token: &str, id, method: &str, params: Value| {
        post_modern(&server, id, method, params)
            .bearer_auth(token)
            .send()
    };
    let listed = answer_of(modern(&alice, 1, "tools/list", json!({})).await.unwrap()).await;
    let text = listed.to_string();
    assert!(text.contains(ADD) && !text.contains(TRACEPARENT), "{text}");
    let called = answer_of(
        modern(
            &bob,
            2,
            "tools/call",
            json!({"name": "execute_code", "arguments": {"code": "return await tools.toy.add({ a: 1, b: 1 });"}}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(called["result"]["isError"], json!(true), "{called}");
    let discovered = answer_of(
        modern(&alice, 3, "server/discover", json!({}))
            .await
            .unwrap(),
    )
    .await;
    assert!(discovered["result"].is_object(), "{discovered}");
}

/// Over stdio the overlay names the configured principal (`codemode.principal`); both
/// protocol eras see the same narrowed catalog.
#[tokio::test]
async fn over_stdio_the_configured_principal_is_narrowed_in_both_eras() {
    let dir = common::scratch_dir("tenants-stdio");
    let config = common::write_config(
        &dir,
        &json!({
            "mcpServers": { "toy": common::toy() },
            "codemode": {
                "principal": "ci-runner",
                "tenants": [{
                    "principals": ["ci-*"],
                    "rules": [
                        { "tools": "toy.traceparent", "action": "deny" },
                        { "tools": "toy.slow", "action": "confirm" }
                    ],
                    "limits": { "timeoutMs": 800, "heapMiB": 16, "outputChars": 3000 }
                }]
            }
        }),
    );
    let legacy: Server = common::start(&["--config", &config]).await;
    let mut command = tokio::process::Command::new(common::BIN);
    command
        .args(["serve", "--config", &config])
        .env("CODEMODE_LOG", "warn");
    let modern: RunningService<RoleClient, ()> = ()
        .serve_with_lifecycle(
            TokioChildProcess::new(command).unwrap(),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap();
    for peer in [legacy.client.peer(), modern.peer()] {
        let described = description(peer).await;
        assert!(
            described.contains(ADD) && !described.contains(TRACEPARENT),
            "{described}"
        );
        // Named in the source, it is refused before the program runs, as a tool that
        // does not exist, among the tools the principal has.
        let ran = execute(peer, "return await tools.toy.traceparent({});").await;
        let message = ran.error_message();
        let has = message.split_once(" has: ").map_or("", |(_, has)| has);
        assert!(
            message.contains("does not exist") && has.contains("add, crash"),
            "{}",
            ran.text
        );
        assert!(!has.contains("traceparent"), "{}", ran.text);
        // The overlay's own confirm rule: this client cannot be asked, so it is refused.
        let asked = execute(peer, "return await tools.toy.slow({ ms: 1 });").await;
        assert_eq!(asked.error_kind(), "policy", "{}", asked.text);
        assert!(asked.error_message().contains("confirm"), "{}", asked.text);
        // Its own limits: the clock (only it can end an endless loop) and the heap.
        let endless = execute(peer, "for (;;) {}").await;
        assert_eq!(endless.error_kind(), "timeout", "{}", endless.text);
        assert!(
            endless.error_message().contains("800 ms"),
            "{}",
            endless.text
        );
        let big = execute(peer, "const s = 'x'.repeat(24_000_000);\nreturn s.length;").await;
        assert_eq!(big.error_kind(), "memory", "{}", big.text);
        // The overlay's answer budget: a long result is cut to it.
        let long = execute(peer, "return 'x'.repeat(20000);").await;
        assert!(long.text.chars().count() < 6_000, "{}", long.text.len());
    }
    modern.cancel().await.unwrap();
}

#[test]
fn check_config_lists_the_overlays_and_refuses_a_bad_one_naming_its_key() {
    let dir = common::scratch_dir("tenants-bad");
    let good = std::process::Command::new(common::BIN)
        .args(["check-config", &config(&dir)])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{stdout}");
    for line in [
        "codemode.tenants[0] (adders) narrows for: alice (1 rules, default deny, fetch only http://127.0.0.1:9/public/**)",
        "codemode.tenants[1] narrows for: bob (1 rules, default allow, no fetch)",
        "codemode.tenants[2] narrows for: scope team:no-fail",
        "codemode.tenants[0] (adders) quotas: toolCallsPerDay 1000",
    ] {
        assert!(stdout.contains(line), "{line} in {stdout}");
    }
    for (tenant, key) in [
        (
            json!({ "rules": [] }),
            "codemode.tenants[0]: matches nobody",
        ),
        (
            json!({ "principals": ["a"], "rules": [{ "tools": "toy.{", "action": "deny" }] }),
            "codemode.tenants[0].rules[0].tools",
        ),
        (
            json!({ "principals": ["a"], "limits": { "timeoutMs": 1 } }),
            "codemode.tenants[0].limits.timeoutMs",
        ),
        (
            json!({ "principals": ["a"], "limits": { "concurrency": 1 } }),
            "concurrency",
        ),
    ] {
        let config = common::write_config(&dir, &json!({ "codemode": { "tenants": [tenant] } }));
        let out = std::process::Command::new(common::BIN)
            .args(["check-config", &config])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(key), "{key} in {stderr}");
    }
}
