//! What an isolate may ask of the host, as plain data: a tool call in, a reply out. The
//! host (not the isolate) holds upstream clients, credentials and the catalog.

use std::{future::Future, pin::Pin};

use serde::{Deserialize, Serialize};

/// `tools.<namespace>.<tool>` as the program saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// `tools.<namespace>`.
    pub namespace: String,
    /// The functions in it, by JS name.
    pub tools: Vec<String>,
    /// Other names that reach some of them: the MCP names that are not their own JS names
    /// (`tools.ns["get-sum"]` beside `tools.ns.get_sum`). Not listed by `Object.keys`.
    #[serde(default)]
    pub aliases: Vec<Alias>,
    /// Also a global of that name (`state`, `skills`: the host's own namespaces), unless
    /// the global exists.
    #[serde(default)]
    pub global: bool,
    /// Why its server cannot be called now (down, still connecting), as the model should
    /// read it; `None`: it is up.
    #[serde(default)]
    pub unavailable: Option<String>,
}

/// A second name for one function of a [`Binding`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    /// The name, any string.
    pub name: String,
    /// The JS name of the function it reaches, one of [`Binding::tools`].
    pub tool: String,
}

/// One tool call from a program.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolCall {
    /// `tools.<namespace>`.
    pub namespace: String,
    /// `tools.<namespace>.<tool>`.
    pub tool: String,
    /// The arguments as JSON text.
    pub arguments: String,
    /// The program's `line:column` that made the call, when the glue could tell.
    #[serde(default)]
    pub site: Option<crate::transpile::Position>,
}

/// The host's answer to a [`ToolCall`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToolReply {
    /// The result, mapped to a program value, as JSON text.
    Ok(String),
    /// The call failed; the program gets a `ToolError`.
    Err(ToolFailure),
}

/// Why a tool call failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolFailure {
    /// What went wrong, for the model.
    pub message: String,
    /// JSON pointer into the input schema when the arguments were invalid.
    pub schema_path: Option<String>,
}

impl ToolReply {
    /// The reply as the JS glue reads it: `{"ok": value}` or `{"error": {...}}`.
    pub(crate) fn to_js_json(&self) -> String {
        match self {
            Self::Ok(json) => format!("{{\"ok\":{json}}}"),
            Self::Err(failure) => serde_json::json!({
                "error": { "message": failure.message, "schemaPath": failure.schema_path }
            })
            .to_string(),
        }
    }
}

/// A boxed, sendable reply future.
pub type ReplyFuture = Pin<Box<dyn Future<Output = ToolReply> + Send>>;

/// Answers tool calls (and `fetch` requests) for one execution.
pub trait ToolHost: Send + Sync {
    /// Starts answering `call`.
    fn call_tool(&self, call: ToolCall) -> ReplyFuture;

    /// Starts answering a program's `fetch`; `request` is the glue's JSON
    /// (`crate::egress::FetchRequest`). Hosts without egress refuse it.
    fn fetch(&self, request: String) -> ReplyFuture {
        let _ = request;
        Box::pin(std::future::ready(ToolReply::Err(ToolFailure {
            message: "fetch is off: the server allows no URLs (codemode.egress.rules)".into(),
            schema_path: None,
        })))
    }

    /// Notes a call (`fetch`: a fetch, its request in `call.arguments`) that the program
    /// made but that never left the sandbox before the program ended: a record, never a
    /// call.
    fn unsent(&self, call: ToolCall, fetch: bool) {
        let _ = (call, fetch);
    }
}

/// A host with no tools: every call fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTools;

impl ToolHost for NoTools {
    fn call_tool(&self, call: ToolCall) -> ReplyFuture {
        Box::pin(std::future::ready(ToolReply::Err(ToolFailure {
            message: format!("tools.{}.{} does not exist", call.namespace, call.tool),
            schema_path: None,
        })))
    }
}
