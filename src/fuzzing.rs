//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz), and for
//! `tests/it/fuzz_corpora.rs`, which replays their committed corpora on every test run. Each
//! takes the fuzzer's raw bytes and must never panic, whatever they are: they are the
//! places where bytes from outside (a compromised worker, an upstream, a config file, a
//! program) are decoded.

use std::sync::Arc;

use rmcp::model::{CallToolResult, Tool};
use serde_json::Value;

use crate::{
    catalog::Catalog,
    config::Config,
    egress::{Egress, FetchRequest},
    policy::Policy,
    upstream::{Snapshot, Status},
};

/// What a worker process sends the host: tool calls, fetches, outcomes. A compromised
/// worker controls every byte.
pub fn worker_message(data: &[u8]) {
    crate::isolation::decode_worker_message(data);
}

/// A tool call's argument text as the host decodes it and checks it against a tool's
/// input schema. The first line of `data` is the schema, the rest the arguments.
pub fn call_arguments(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (schema, arguments) = text.split_once('\n').unwrap_or((&text, "{}"));
    let Ok(Value::Object(schema)) = serde_json::from_str::<Value>(schema) else {
        return;
    };
    let catalog = one_tool_catalog(schema);
    let Some(tool) = catalog.tools().next() else {
        return;
    };
    if let Ok(arguments) = serde_json::from_str::<Value>(arguments) {
        let _ = tool.validate(&arguments);
    }
}

/// An upstream's tool result, mapped to the value a program receives and encoded for the
/// isolate; the encoding must always be JSON.
pub fn tool_result(data: &[u8]) {
    let Ok(result) = serde_json::from_slice::<CallToolResult>(data) else {
        return;
    };
    let reply = match crate::executor::program_value(result) {
        Ok(value) => crate::sandbox::ToolReply::Ok(value.to_string()),
        Err(message) => crate::sandbox::ToolReply::Err(crate::sandbox::ToolFailure {
            message,
            schema_path: None,
        }),
    };
    let encoded = reply.to_js_json();
    assert!(
        serde_json::from_str::<Value>(&encoded).is_ok(),
        "the reply the isolate reads is not JSON: {encoded}"
    );
}

/// A tool's schemas turned into TypeScript declarations.
pub fn typegen(data: &[u8]) {
    let Ok(Value::Object(schema)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = crate::typegen::ts_type(&Value::Object(schema.clone()));
    let catalog = one_tool_catalog(schema);
    let _ = crate::typegen::all_declarations(&catalog);
}

/// A config file: `mcpServers`, limits, the policy and the egress rules.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text, "fuzz") {
        let _ = Policy::new(&config.codemode.policy);
        let _ = Egress::new(&config.codemode.egress, &|_| None);
    }
}

/// A program's `fetch` request as the host decodes it, and a URL checked against rules.
pub fn fetch_request(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<FetchRequest>(data) else {
        return;
    };
    let _ = request.target();
    let settings: crate::config::EgressSettings = serde_json::from_value(serde_json::json!({
        "rules": [{ "url": "https://*.example.com/api/**" }, { "url": "http://127.0.0.1:8080" }]
    }))
    .unwrap_or_default();
    if let Ok(Some(egress)) = Egress::new(&settings, &|_| None) {
        let _ = egress.check(&request.url);
    }
}

/// A program as the pre-flight scan reads it.
pub fn preflight(data: &[u8]) {
    let code = String::from_utf8_lossy(data);
    if let Ok(transpiled) = crate::transpile::transpile(&code) {
        let _ = crate::preflight::scan(&transpiled.js, crate::transpile::line_count(&code));
    }
}

fn one_tool_catalog(input_schema: serde_json::Map<String, Value>) -> Catalog {
    let tool = Tool::new(
        "fuzzed",
        "A tool whose schema the fuzzer wrote",
        Arc::new(input_schema),
    );
    Catalog::from_snapshots(
        vec![Snapshot {
            name: "fuzz".into(),
            transport: "stdio",
            status: Status::Ready,
            tools: Arc::new(vec![tool]),
            ready_in: None,
            last_words: String::new(),
        }],
        &Policy::default(),
    )
}
