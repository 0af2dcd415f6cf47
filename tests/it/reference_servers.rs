//! The reference MCP servers from npm (filesystem, memory, everything) and mcp-server-time
//! from PyPI as upstreams, through a real client talking to the real binary. The test
//! command installs them and names where (CODEMODE_TEST_NPM_BIN, CODEMODE_TEST_PYTHON).

use crate::common;

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::start;
use serde_json::{Value, json};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with ./scripts/test, which installs the reference servers")
    })
}

fn npm_bin(name: &str) -> String {
    format!("{}/{name}", env("CODEMODE_TEST_NPM_BIN"))
}

fn write_config(dir: &std::path::Path, servers: Value) -> String {
    common::write_config(dir, &json!({ "mcpServers": servers }))
}

#[tokio::test]
async fn one_program_reads_files_stores_facts_and_converts_time() {
    let dir = common::scratch_dir("scenario");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), "alpha 3\n").unwrap();
    std::fs::write(data.join("b.txt"), "beta 4\n").unwrap();
    let config = write_config(
        &dir,
        json!({
            "filesystem": { "command": npm_bin("mcp-server-filesystem"), "args": [data] },
            "memory": { "command": npm_bin("mcp-server-memory"), "env": { "MEMORY_FILE_PATH": dir.join("memory.jsonl") } },
            "time": { "command": env("CODEMODE_TEST_PYTHON"), "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"] }
        }),
    );
    let server = start(&["--config", &config]).await;
    let code = format!(
        r#"const names = ["a.txt", "b.txt"];
const files = await Promise.all(names.map((n) => tools.filesystem.read_text_file({{ path: `{}/${{n}}` }})));
const facts = files.map((f: any, i) => ({{ name: names[i], text: String(f.content ?? f).trim() }}));
await tools.memory.create_entities({{ entities: facts.map((f) => ({{ name: f.name, entityType: "file", observations: [f.text] }})) }});
const found: any = await tools.memory.search_nodes({{ query: "file" }});
const tokyo: any = await tools.time.convert_time({{ source_timezone: "UTC", time: "09:30", target_timezone: "Asia/Tokyo" }});
const total = facts.reduce((sum, f) => sum + Number(f.text.split(" ")[1]), 0);
return {{ files: facts.length, stored: found.entities.length, total, tokyo: tokyo.target.datetime.slice(11, 16) }};"#,
        data.display()
    );
    let ran = server.execute(&code).await;
    assert!(!ran.is_error, "{ran:?}");
    assert_eq!(
        ran.result(),
        &json!({ "files": 2, "stored": 2, "total": 7, "tokyo": "18:30" })
    );
    let calls: Vec<&str> = ran.structured["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tool"].as_str().unwrap())
        .collect();
    assert_eq!(calls.len(), 5, "{calls:?}");
    for tool in [
        "filesystem.read_text_file",
        "memory.create_entities",
        "memory.search_nodes",
        "time.convert_time",
    ] {
        assert!(calls.contains(&tool), "{tool} missing from {calls:?}");
    }
    // The filesystem server refuses paths outside its directory: a ToolError the program catches.
    let ran = server
        .execute("try { await tools.filesystem.read_text_file({ path: '/etc/passwd' }); return 'read'; } catch (e) { return e.name; }")
        .await;
    assert_eq!(ran.result(), &json!("ToolError"));
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn server_everything_over_streamable_http_as_an_upstream() {
    everything_as_upstream(
        "streamableHttp",
        |port| json!({ "type": "http", "url": format!("http://127.0.0.1:{port}/mcp") }),
    )
    .await;
}

#[tokio::test]
async fn server_everything_over_legacy_sse_as_an_upstream() {
    // No "type": an endpoint ending in /sse is taken as the legacy transport.
    everything_as_upstream(
        "sse",
        |port| json!({ "url": format!("http://127.0.0.1:{port}/sse") }),
    )
    .await;
}

async fn everything_as_upstream(mode: &str, upstream: impl Fn(u16) -> Value) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _everything = Kill(
        Command::new(npm_bin("mcp-server-everything"))
            .arg(mode)
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server-everything did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = common::scratch_dir(mode);
    let config = write_config(&dir, json!({ "everything": upstream(port) }));
    let server = start(&["--config", &config]).await;
    let ran = server
        .execute("const [sum, weather] = await Promise.all([\n  tools.everything.get_sum({ a: 2, b: 3 }),\n  tools.everything.get_structured_content({ location: 'New York' }),\n]);\nreturn { sum, hasTemperature: typeof weather.temperature === 'number' };")
        .await;
    assert!(!ran.is_error, "{ran:?}");
    assert_eq!(ran.result()["hasTemperature"], json!(true));
    // Content that is not text reaches the program as an object with its type.
    let image = server
        .execute("const r: any = await tools.everything.get_tiny_image();\nconst items = Array.isArray(r) ? r : [r];\nreturn items.map((c: any) => typeof c === 'object' ? c.type + ' ' + (c.mimeType ?? '') : 'text');")
        .await;
    assert!(
        image
            .result()
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "image image/png"),
        "{image:?}"
    );
    assert!(
        ran.result()["sum"].as_str().unwrap().contains('5'),
        "{ran:?}"
    );
    // Its declarations show the declared outputSchema as the return type.
    let tools = server.client.list_all_tools().await.unwrap();
    let description = tools[0].description.clone().unwrap_or_default();
    assert!(description.contains("tools.everything"), "{description}");
}

#[tokio::test]
async fn a_started_server_sees_none_of_our_credentials_only_its_own_env_and_what_is_passed() {
    let dir = common::scratch_dir("environment");
    let config = common::write_config(
        &dir,
        &json!({
            "mcpServers": {
                "everything": {
                    "command": npm_bin("mcp-server-everything"),
                    "env": { "ITS_OWN": "own-value" },
                    "inheritEnv": ["PASSED_HERE"]
                },
                // Credentials meant for two other servers only.
                "github": { "url": "http://127.0.0.1:9/mcp", "headers": { "Authorization": "Bearer ${GH_TOKEN}" } },
                "memory": {
                    "command": npm_bin("mcp-server-memory"),
                    "env": { "MEMORY_FILE_PATH": dir.join("m.jsonl"), "MEMORY_KEY": "${OTHER_SECRET}" }
                }
            },
            "codemode": { "inheritEnv": ["PASSED_EVERYWHERE"] }
        }),
    );
    let (client, _pid) = common::start_with(
        (),
        &["--config", &config],
        &[
            ("GH_TOKEN", "gh-secret-1"),
            ("CODEMODE_AUTH_TOKEN", "auth-secret-2"),
            ("OTHER_SECRET", "other-secret-3"),
            ("UNRELATED_VAR", "unrelated-4"),
            ("PASSED_HERE", "passed-5"),
            ("PASSED_EVERYWHERE", "passed-6"),
        ],
    )
    .await;
    let server = common::Server { client, pid: _pid };
    let ran = server
        .execute("const env = await tools.everything.get_env();\nreturn typeof env === 'string' ? env : JSON.stringify(env);")
        .await;
    assert!(!ran.is_error, "{ran:?}");
    let seen = ran.result().as_str().unwrap_or_default().to_string();
    for withheld in [
        "gh-secret-1",
        "auth-secret-2",
        "other-secret-3",
        "unrelated-4",
        "CODEMODE_LOG",
    ] {
        assert!(
            !seen.contains(withheld),
            "{withheld} reached the server: {seen}"
        );
    }
    for passed in ["own-value", "passed-5", "passed-6", "PATH", "HOME"] {
        assert!(seen.contains(passed), "{passed} missing: {seen}");
    }
}

#[test]
fn declarations_of_the_reference_servers_match_the_golden_file() {
    let dir = common::scratch_dir("golden");
    let config = write_config(
        &dir,
        json!({
            "filesystem": { "command": npm_bin("mcp-server-filesystem"), "args": [dir] },
            "memory": { "command": npm_bin("mcp-server-memory"), "env": { "MEMORY_FILE_PATH": dir.join("m.jsonl") } },
            "everything": { "command": npm_bin("mcp-server-everything") },
            "time": { "command": env("CODEMODE_TEST_PYTHON"), "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"] }
        }),
    );
    let out = Command::new(common::BIN)
        .args(["types", "--config", &config])
        .env("CODEMODE_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let declarations = String::from_utf8(out.stdout).unwrap();
    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/reference-servers.d.ts"
    );
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(std::path::Path::new(golden).parent().unwrap()).unwrap();
        std::fs::write(golden, &declarations).unwrap();
    }
    let expected = std::fs::read_to_string(golden).unwrap_or_default();
    assert!(
        expected == declarations,
        "typegen output differs from tests/golden/reference-servers.d.ts; if intended, rewrite it with\n  UPDATE_GOLDEN=1 ./scripts/test\nnew output:\n{declarations}"
    );
}

/// Return types learned from real results: server-everything's `get_sum` and `get_env`
/// declare no `outputSchema`; after a call their declarations (in `search_tools` and the
/// resources) carry the type inferred from what they returned, kept across a restart,
/// while the `execute_code` description, which clients cache, does not change.
#[tokio::test]
async fn return_types_are_learned_from_results_and_kept_across_restarts() {
    let dir = common::scratch_dir("learned");
    let types = dir.join("learned-types.json");
    let config = common::write_config(
        &dir,
        &json!({
            "mcpServers": { "everything": { "command": npm_bin("mcp-server-everything") } },
            "codemode": { "learnedTypes": { "path": types } }
        }),
    );
    let search = |server: &common::Server, query: &str| {
        let Value::Object(arguments) =
            json!({ "query": query, "detail": "signatures", "limit": 1 })
        else {
            unreachable!()
        };
        let client = server.client.peer().clone();
        async move {
            let found = client
                .call_tool(
                    rmcp::model::CallToolRequestParams::new("search_tools")
                        .with_arguments(arguments),
                )
                .await
                .unwrap();
            found.content[0].as_text().unwrap().text.clone()
        }
    };
    let description = |server: &common::Server| {
        let client = server.client.peer().clone();
        async move {
            let tools = client.list_all_tools().await.unwrap();
            tools[0].description.clone().unwrap_or_default().to_string()
        }
    };

    let server = start(&["--config", &config]).await;
    let before = description(&server).await;
    let declared = search(&server, "get_sum").await;
    assert!(
        declared.contains("function get_sum(") && declared.contains("Promise<unknown>"),
        "{declared}"
    );

    let ran = server
        .execute("const sum = await tools.everything.get_sum({ a: 2, b: 3 });\nawait tools.everything.get_sum({ a: 1.5, b: 1 });\nconst env: any = await tools.everything.get_env();\nreturn typeof env;")
        .await;
    assert!(!ran.is_error, "{ran:?}");

    let learned = search(&server, "get_sum").await;
    assert!(
        learned.contains("Returns a type inferred from 2 observed results"),
        "{learned}"
    );
    assert!(!learned.contains("Promise<unknown>"), "{learned}");
    let resource = server
        .client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "codemode://types/everything.d.ts",
        ))
        .await
        .unwrap();
    let resource = format!("{resource:?}");
    assert!(
        resource.contains("inferred from 1 observed result "),
        "{resource}"
    );
    assert_eq!(
        description(&server).await,
        before,
        "the description must not change"
    );
    assert!(!before.contains("inferred from"));
    drop(server);

    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&types).unwrap()).unwrap();
    // Kept by MCP tool name.
    assert_eq!(saved["everything"]["get-sum"]["observed"], 2, "{saved}");
    let server = start(&["--config", &config]).await;
    let again = search(&server, "get_sum").await;
    assert!(
        again.contains("inferred from 2 observed results"),
        "{again}"
    );
    // Bad input to the file never stops the server: it starts afresh.
    drop(server);
    std::fs::write(&types, "{ not json").unwrap();
    let server = start(&["--config", &config]).await;
    let fresh = search(&server, "get_sum").await;
    assert!(fresh.contains("Promise<unknown>"), "{fresh}");
    server.assert_alive().await;
}

/// The code in a fenced `ts` block of `text`, the first one.
fn first_ts_block(text: &str) -> String {
    let start = text.find("```ts\n").expect("a ts example") + "```ts\n".len();
    let end = text[start..].find("```").expect("its end") + start;
    text[start..end].to_string()
}

/// The examples a model is shown give the right answer against the pinned reference
/// servers: the `write-a-program` prompt's (its `/data` pointed at a directory of three
/// files and a subdirectory) and the `execute_code` description's.
#[tokio::test]
async fn the_examples_a_model_is_shown_give_the_right_answer() {
    let dir = common::scratch_dir("examples-shown");
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("nested")).unwrap();
    for name in ["a.txt", "b.txt", "c.txt"] {
        std::fs::write(data.join(name), "x\n").unwrap();
    }
    let config = write_config(
        &dir,
        json!({
            "filesystem": { "command": npm_bin("mcp-server-filesystem"), "args": [data] },
            "time": { "command": env("CODEMODE_TEST_PYTHON"), "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"] }
        }),
    );
    let server = start(&["--config", &config]).await;
    let prompt = server
        .client
        .get_prompt(rmcp::model::GetPromptRequestParams::new("write-a-program"))
        .await
        .unwrap();
    let text = prompt.messages[0]
        .content
        .as_text()
        .map(|t| t.text.clone())
        .expect("a text prompt");
    let example =
        first_ts_block(&text).replace("\"/data\"", &format!("{:?}", data.display().to_string()));
    let ran = server.execute(&example).await;
    assert!(!ran.is_error, "{ran:?}");
    assert_eq!(ran.result()["count"], json!(3), "{ran:?}");
    assert!(
        ran.result()["checkedAt"]
            .as_str()
            .is_some_and(|t| t.len() >= 19),
        "{ran:?}"
    );

    let tools = server.client.list_all_tools().await.unwrap();
    let description = tools
        .iter()
        .find(|t| t.name == "execute_code")
        .and_then(|t| t.description.as_deref())
        .unwrap_or_default()
        .to_string();
    let ran = server.execute(&first_ts_block(&description)).await;
    assert_eq!(
        ran.result(),
        &json!([{ "n": 1, "square": 1 }, { "n": 2, "square": 4 }, { "n": 3, "square": 9 }]),
        "{ran:?}"
    );
}
