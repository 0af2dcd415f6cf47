//! Saved skills (`codemode.skills`), through the real binary: a skill saved, called from a
//! later program (as `skills.<name>` and `tools.skills.<name>`), kept as plain files,
//! versioned, listed, deleted, surviving a restart; run under the same policy and nesting
//! limit as any program; offered as MCP tools of their own when configured; bad input
//! refused with what is wrong; and absent when not configured.

use crate::common;

use common::{Server, start};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use serde_json::{Value, json};

async fn call(server: &Server, tool: &str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object")
    };
    server
        .client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
        .await
        .unwrap_or_else(|err| panic!("{tool}: {err}"))
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn config(dir: &std::path::Path, skills: Value) -> String {
    let mut skills_section = json!({ "path": dir.join("skills") });
    if let (Some(section), Some(extra)) = (skills_section.as_object_mut(), skills.as_object()) {
        section.extend(extra.clone());
    }
    common::write_config(
        dir,
        &json!({ "codemode": {
            "skills": skills_section,
            "state": { "enabled": true },
            "policy": { "rules": [
                { "tools": "state.delete", "action": "deny" },
                { "tools": "*", "action": "allow" }
            ] }
        }}),
    )
}

const SUM_SQUARES: &str =
    "let total = 0;\nfor (const n of args.numbers) total += n * n;\nreturn total;";

fn sum_squares() -> Value {
    json!({
        "name": "sum_squares",
        "description": "Sum of the squares of `numbers`.",
        "code": SUM_SQUARES,
        "inputSchema": {
            "type": "object",
            "properties": { "numbers": { "type": "array", "items": { "type": "number" } } },
            "required": ["numbers"]
        }
    })
}

#[tokio::test]
async fn a_saved_skill_is_called_from_later_programs_versioned_and_kept_across_a_restart() {
    let dir = common::scratch_dir("skills-saved");
    let config = config(&dir, json!({}));
    let log = dir.join("audit.jsonl");
    let server = start(&["--config", &config, "--audit-log", log.to_str().unwrap()]).await;
    let tools = server.client.list_all_tools().await.unwrap();
    for name in ["save_skill", "list_skills", "delete_skill"] {
        assert!(tools.iter().any(|t| t.name == name), "{name} is listed");
    }

    let instructions = server
        .client
        .peer_info()
        .unwrap()
        .instructions
        .clone()
        .unwrap_or_default();
    assert!(instructions.contains("save_skill"), "{instructions}");
    assert!(instructions.contains("state.get"), "{instructions}");
    let saved = call(&server, "save_skill", sum_squares()).await;
    assert_ne!(saved.is_error, Some(true), "{saved:?}");
    assert!(text(&saved).contains("skills.sum_squares"), "{saved:?}");

    // A later program calls it, by the global and through tools.
    let ran = server
        .execute("const a = await skills.sum_squares({ numbers: [1, 2, 3] });\nconst b = await tools.skills.sum_squares({ numbers: [4] });\nreturn [a, b];")
        .await;
    assert!(!ran.is_error, "{ran:?}");
    assert_eq!(ran.result(), &json!([14, 16]));
    // Its arguments are checked against its input schema.
    let ran = server
        .execute("return await skills.sum_squares({ numbers: 'many' });")
        .await;
    assert_eq!(ran.error_kind(), "tool", "{ran:?}");
    assert!(ran.structured["error"]["schemaPath"].is_string(), "{ran:?}");
    // search_tools shows its declaration.
    let found = call(&server, "search_tools", json!({ "query": "squares" })).await;
    assert!(
        text(&found).contains("function sum_squares(args: {"),
        "{found:?}"
    );

    // Plain files a person can read.
    let folder = dir.join("skills/sum_squares");
    assert_eq!(
        std::fs::read_to_string(folder.join("v1.ts")).unwrap(),
        format!("{SUM_SQUARES}\n")
    );
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("v1.json")).unwrap()).unwrap();
    assert_eq!(
        meta["description"],
        json!("Sum of the squares of `numbers`.")
    );
    assert_eq!(meta["version"], json!(1));
    let declared = std::fs::read_to_string(folder.join("v1.d.ts")).unwrap();
    assert!(
        declared.contains("function sum_squares(args: {"),
        "{declared}"
    );
    assert!(declared.contains("numbers: number[]"), "{declared}");

    // Saving again adds a version, which is the one called.
    let mut doubled = sum_squares();
    doubled["code"] =
        json!(format!("{SUM_SQUARES}\n// v2\n").replace("return total;", "return 2 * total;"));
    let saved = call(&server, "save_skill", doubled).await;
    assert!(text(&saved).contains("version 2"), "{saved:?}");
    let ran = server
        .execute("return await skills.sum_squares({ numbers: [1, 2, 3] });")
        .await;
    assert_eq!(ran.result(), &json!(28));
    let listed: Value =
        serde_json::from_str(&text(&call(&server, "list_skills", json!({})).await)).unwrap();
    assert_eq!(listed[0]["name"], json!("sum_squares"));
    assert_eq!(listed[0]["version"], json!(2));
    assert_eq!(listed[0]["versions"], json!([1, 2]));
    // Deleting version 2 brings back version 1.
    let deleted = call(
        &server,
        "delete_skill",
        json!({ "name": "sum_squares", "version": 2 }),
    )
    .await;
    assert!(
        text(&deleted).contains("version 1 is now the one called"),
        "{deleted:?}"
    );
    assert!(!folder.join("v2.ts").exists());

    // A skill's own run is audited as one, under the caller's session.
    let audit = std::fs::read_to_string(&log).unwrap();
    assert!(audit.contains(r#""transport":"skill""#), "{audit}");
    assert!(
        audit.contains(r#""client":"skills.sum_squares v1""#),
        "{audit}"
    );

    // After a restart it is still there.
    drop(server);
    let server = start(&["--config", &config]).await;
    let ran = server
        .execute("return await skills.sum_squares({ numbers: [3] });")
        .await;
    assert_eq!(ran.result(), &json!(9), "{ran:?}");
    // Deleting it all removes its folder.
    let deleted = call(&server, "delete_skill", json!({ "name": "sum_squares" })).await;
    assert!(text(&deleted).contains("none left"), "{deleted:?}");
    assert!(!folder.exists());
    let ran = server
        .execute("return await skills.sum_squares({ numbers: [3] });")
        .await;
    assert_eq!(ran.error_kind(), "tool", "{ran:?}");
}

#[tokio::test]
async fn a_skill_runs_under_the_policy_and_the_nesting_limit_and_reports_its_failures() {
    let dir = common::scratch_dir("skills-policy");
    let config = config(&dir, json!({}));
    let server = start(&["--config", &config]).await;
    let save = |name: &str, code: &str| json!({ "name": name, "description": "A test skill.", "code": code });
    // It shares the caller's session state.
    for (name, code) in [
        (
            "remember",
            "await tools.state.set({ key: 'seen', value: args.word ?? 'x' });\nreturn await state.get({ key: 'seen' });",
        ),
        (
            "forget",
            "return await tools.state.delete({ key: 'seen' });",
        ),
        ("boom", "const n = 1;\nthrow new Error('boom ' + n);"),
        (
            "forget_global",
            "const mine = { delete: () => 1 };\nmine.delete();\nreturn await state.delete({ key: 'seen' });",
        ),
        ("again", "return await skills.again({});"),
    ] {
        let saved = call(&server, "save_skill", save(name, code)).await;
        assert_ne!(saved.is_error, Some(true), "{saved:?}");
    }
    let ran = server
        .execute("const echoed = await skills.remember({ word: 'hello' });\nreturn [echoed, await state.get({ key: 'seen' })];")
        .await;
    assert_eq!(ran.result(), &json!(["hello", "hello"]), "{ran:?}");

    // What its program calls is declared beside it, as it was when it was saved.
    let declared = std::fs::read_to_string(dir.join("skills/remember/v1.d.ts")).unwrap();
    assert!(
        declared.contains("function remember(args: Record<string, unknown>)"),
        "{declared}"
    );
    assert!(
        declared.contains("declare namespace tools.state"),
        "{declared}"
    );
    assert!(declared.contains("function set(args: {"), "{declared}");

    // The policy denies state.delete: the skill's program is refused before it runs.
    let ran = server.execute("return await skills.forget({});").await;
    assert_eq!(ran.error_kind(), "tool", "{ran:?}");
    assert!(ran.error_message().contains("(policy)"), "{ran:?}");
    assert!(ran.error_message().contains("denies"), "{ran:?}");

    // Also when the program calls it through the global `state`: refused before it runs,
    // at its line.
    let ran = server
        .execute("return await skills.forget_global({});")
        .await;
    assert!(ran.error_message().contains("(policy) at 3:"), "{ran:?}");
    assert!(ran.error_message().contains("state.delete"), "{ran:?}");

    // A failure names the skill's own line.
    let ran = server.execute("return await skills.boom({});").await;
    assert_eq!(ran.error_kind(), "tool", "{ran:?}");
    let message = ran.error_message();
    assert!(message.contains("skills.boom"), "{message}");
    assert!(message.contains("(runtime) at 2:"), "{message}");
    assert!(message.contains("skills/boom/v1.ts"), "{message}");
    assert!(message.contains("boom 1"), "{message}");

    // A skill that calls itself stops at codemode.policy.maxDepth.
    let ran = server.execute("return await skills.again({});").await;
    assert_eq!(ran.error_kind(), "tool", "{ran:?}");
    assert!(ran.error_message().contains("maxDepth"), "{ran:?}");
    server.assert_alive().await;
}

#[tokio::test]
async fn skills_as_mcp_tools_and_bad_input() {
    let dir = common::scratch_dir("skills-tools");
    let config = config(&dir, json!({ "asTools": true, "maxSkills": 1 }));
    let server = start(&["--config", &config]).await;
    assert_ne!(
        call(&server, "save_skill", sum_squares()).await.is_error,
        Some(true)
    );
    let tools = server.client.list_all_tools().await.unwrap();
    let tool = tools
        .iter()
        .find(|t| t.name == "skill_sum_squares")
        .expect("the skill is a tool");
    assert_eq!(
        Value::Object((*tool.input_schema).clone()),
        sum_squares()["inputSchema"]
    );
    let answer = call(&server, "skill_sum_squares", json!({ "numbers": [2, 3] })).await;
    assert_ne!(answer.is_error, Some(true), "{answer:?}");
    assert_eq!(
        answer.structured_content.as_ref().unwrap()["result"],
        json!(13)
    );
    let answer = call(&server, "skill_sum_squares", json!({ "numbers": [true] })).await;
    assert_eq!(answer.is_error, Some(true), "{answer:?}");

    for (arguments, expected) in [
        (
            json!({ "name": "Bad-Name", "description": "d", "code": "return 1" }),
            "invalid skill name",
        ),
        (
            json!({ "name": "ok", "description": " ", "code": "return 1" }),
            "invalid description",
        ),
        (
            json!({ "name": "ok", "description": "d", "code": "return (1" }),
            "invalid code: it does not parse at 1:",
        ),
        (
            json!({ "name": "ok", "description": "d", "code": "return 1", "inputSchema": { "type": "string" } }),
            "invalid inputSchema",
        ),
        (
            json!({ "name": "other", "description": "d", "code": "return 1" }),
            "codemode.skills.maxSkills",
        ),
        (
            json!({ "name": "ok", "code": "return 1" }),
            "invalid argument",
        ),
    ] {
        let answer = call(&server, "save_skill", arguments.clone()).await;
        assert_eq!(answer.is_error, Some(true), "{arguments}: {answer:?}");
        assert!(text(&answer).contains(expected), "{expected}: {answer:?}");
    }
    let answer = call(
        &server,
        "delete_skill",
        json!({ "name": "sum_squares", "version": 7 }),
    )
    .await;
    assert!(
        text(&answer).contains("has no version 7; it has 1"),
        "{answer:?}"
    );
    let answer = call(&server, "delete_skill", json!({ "name": "nothing" })).await;
    assert!(text(&answer).contains("no skill named"), "{answer:?}");
    server.assert_alive().await;
}

#[tokio::test]
async fn without_a_skills_path_there_are_no_skill_tools() {
    let server = start(&[]).await;
    let tools = server.client.list_all_tools().await.unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["execute_code", "search_tools"]);
    let instructions = server
        .client
        .peer_info()
        .unwrap()
        .instructions
        .clone()
        .unwrap_or_default();
    assert!(!instructions.contains("save_skill"), "{instructions}");
    assert!(!instructions.contains("state.get"), "{instructions}");
    let ran = server.execute("return typeof skills;").await;
    assert_eq!(ran.result(), &json!("undefined"));
}

#[tokio::test]
async fn the_skills_namespace_is_reserved_while_skills_are_on() {
    let dir = common::scratch_dir("skills-reserved");
    let config = common::write_config(
        &dir,
        &json!({
            "mcpServers": { "skills": { "command": "true" } },
            "codemode": { "skills": { "path": dir.join("skills") } }
        }),
    );
    let output = std::process::Command::new(common::BIN)
        .args(["serve", "--config", &config])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"skills\""), "{stderr}");
}

/// As many callers as there are execution slots, each calling a skill at once, in both
/// isolation modes: a skill runs within its caller's slot, so none waits for a slot that
/// a caller waiting on its skill holds. Every caller waits until all have started, so all
/// slots are held at the moment the skills are called.
#[tokio::test]
async fn callers_holding_every_slot_can_call_skills() {
    for isolation in ["process", "none"] {
        let dir = common::scratch_dir(&format!("skills-slots-{isolation}"));
        let config = config(&dir, json!({}));
        let server = start(&[
            "--config",
            &config,
            "--concurrency",
            "3",
            "--isolation",
            isolation,
        ])
        .await;
        let saved = call(&server, "save_skill", sum_squares()).await;
        assert_ne!(saved.is_error, Some(true), "{}", text(&saved));
        let runs = (0..3).map(|i| {
            let client = server.client.peer().clone();
            async move {
                // A barrier through session state: each caller counts itself in, then
                // waits until all three are running (all slots held) before it calls.
                let code = format!(
                    "await state.set({{ key: 'in-{i}', value: true }});\n\
                     while ((await state.list({{ prefix: 'in-' }})).length < 3) await new Promise((r) => setTimeout(r, 50));\n\
                     return await skills.sum_squares({{ numbers: [{i}, 2] }});"
                );
                common::execute_on(&client, json!({ "code": code, "timeoutMs": 60_000 })).await
            }
        });
        let outcomes = futures::future::join_all(runs).await;
        for (i, ran) in outcomes.iter().enumerate() {
            assert!(!ran.is_error, "{isolation}: caller {i}: {ran:?}");
            assert_eq!(ran.result(), &json!(i * i + 4), "{isolation}: caller {i}");
        }
    }
}

/// The data-flow mark crosses into and out of skills: a skill that reads untrusted data
/// marks its caller (its result carries the data out), and a marked caller marks the
/// skills it calls (its arguments carry the data in).
#[tokio::test]
async fn untrusted_data_reaching_a_sink_through_a_skill_meets_the_data_flow_guard() {
    let dir = common::scratch_dir("skills-taint");
    let config = common::write_config(
        &dir,
        &json!({
            "mcpServers": { "toy": common::toy() },
            "codemode": {
                "skills": { "path": dir.join("skills") },
                "policy": {
                    "default": "allow",
                    "dataFlow": { "mode": "deny", "sources": ["toy.text"], "sinks": ["toy.add"] }
                }
            }
        }),
    );
    let server = start(&["--config", &config]).await;
    let save = |name: &str, code: &str| json!({ "name": name, "description": "A test skill.", "code": code });
    for (name, code) in [
        ("reader", "return await tools.toy.text();"),
        (
            "sender",
            "return await tools.toy.add({ a: args.n ?? 1, b: 1 });",
        ),
    ] {
        let saved = call(&server, "save_skill", save(name, code)).await;
        assert_ne!(saved.is_error, Some(true), "{saved:?}");
    }
    // Untouched by untrusted data, the sink is reached through the skill and directly.
    let clean = server
        .execute("const a = await skills.sender({ n: 1 });\nconst b = await tools.toy.add({ a: 1, b: 1 });\nreturn [a.sum, b.sum];")
        .await;
    assert_eq!(clean.result(), &json!([2, 2]), "{clean:?}");
    // Out of a skill: what it read taints its caller.
    let out = server
        .execute(
            "const page = await skills.reader({});\nreturn await tools.toy.add({ a: 1, b: 2 });",
        )
        .await;
    assert!(out.error_message().contains("data-flow guard"), "{out:?}");
    assert!(out.error_message().contains("toy.text"), "{out:?}");
    // Into a skill: the caller's untrusted data taints the skill it calls.
    let into = server
        .execute(
            "const page = await tools.toy.text();\nreturn await skills.sender({ n: page.length });",
        )
        .await;
    assert!(into.is_error, "{into:?}");
    assert!(into.error_message().contains("data-flow guard"), "{into:?}");
}
