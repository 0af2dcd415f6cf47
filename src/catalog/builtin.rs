//! Tools written in Rust by the program embedding codemode-mcp. They join the catalog as
//! their own namespace and take the same path as upstream tools: declarations, argument
//! validation against their schema, the call record; only the call itself stays in
//! process.

use std::{borrow::Cow, collections::BTreeMap, future::Future, sync::Arc};

use futures::future::BoxFuture;
use rmcp::model::{JsonObject, Tool};
use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// Calls a built-in tool: arguments in (already validated), a program value or a message
/// for the program's `ToolError` out.
pub type BuiltinHandler =
    Arc<dyn Fn(JsonObject) -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

/// One tool implemented in Rust.
#[derive(Clone)]
pub struct BuiltinTool {
    pub(crate) tool: Tool,
    pub(crate) handler: BuiltinHandler,
}

impl std::fmt::Debug for BuiltinTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinTool")
            .field("name", &self.tool.name)
            .finish_non_exhaustive()
    }
}

impl BuiltinTool {
    /// A tool named `name` (its MCP name; programs call it by the JS identifier derived
    /// from it) that runs `handler`. The input schema comes from `Args` and the output
    /// schema from `Out` (when it describes an object), both derived by schemars, so the
    /// declarations programs see and the validation they get match the Rust types.
    pub fn new<Args, Out, F, Fut>(
        name: impl Into<String>,
        description: impl Into<String>,
        handler: F,
    ) -> Self
    where
        Args: DeserializeOwned + JsonSchema + 'static,
        Out: Serialize + JsonSchema + 'static,
        F: Fn(Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Out, String>> + Send + 'static,
    {
        let name = name.into();
        let mut tool = Tool::new(
            name.clone(),
            description.into(),
            portable_schema(rmcp::handler::server::common::schema_for_type::<Args>()),
        );
        let output = portable_schema(rmcp::handler::server::common::schema_for_type::<Out>());
        if output.get("type").and_then(Value::as_str) == Some("object") {
            tool = tool.with_raw_output_schema(output);
        }
        let handler = Arc::new(handler);
        let call: BuiltinHandler = Arc::new(move |arguments: JsonObject| {
            let handler = handler.clone();
            let name = name.clone();
            Box::pin(async move {
                let args: Args = serde_json::from_value(Value::Object(arguments))
                    .map_err(|err| format!("{name}: invalid arguments: {err}"))?;
                let out = handler(args).await?;
                serde_json::to_value(out)
                    .map_err(|err| format!("{name}: its result is not JSON: {err}"))
            })
        });
        Self {
            tool,
            handler: call,
        }
    }

    /// A tool whose input schema is data (a saved skill's, say) rather than a Rust type;
    /// `handler` gets the arguments already validated against it.
    pub(crate) fn from_schema(tool: Tool, handler: BuiltinHandler) -> Self {
        Self { tool, handler }
    }

    /// Sets MCP tool annotations (`readOnlyHint`, `destructiveHint`, ...).
    pub fn with_annotations(mut self, annotations: rmcp::model::ToolAnnotations) -> Self {
        self.tool = self.tool.with_annotations(annotations);
        self
    }

    /// The tool as MCP describes it.
    pub fn tool(&self) -> &Tool {
        &self.tool
    }
}

/// Who a built-in call is answered for, known to the host alone: the executor sets it
/// around each built-in call ([`on_behalf_of`]).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The MCP session of the execution that made the call.
    pub session: String,
    /// The principal of the execution that made the call (see [`crate::audit::Origin`]).
    pub principal: Option<String>,
    /// How deep that execution nests (0: an agent's own program).
    pub depth: u32,
    /// That execution's data-flow mark: a skill it calls shares it, since the caller's
    /// arguments flow into the skill and the skill's result flows back.
    pub taint: Taint,
    /// Set once a `state.*` call of that execution (or of a skill it called) opened its
    /// store: a store named by a fresh handle is then worth naming in the result.
    pub state_used: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// What the overlays of that execution's principal allow it: a skill it calls runs
    /// under the same.
    pub tenancy: std::sync::Arc<crate::tenants::Tenancy>,
    /// What that execution's principal's quota windows are kept under.
    pub quota_key: Option<String>,
    /// That execution's meter of the daily quotas: a skill it calls draws on it.
    pub meter: Option<std::sync::Arc<crate::tenants::quota::Meter>>,
}

/// The untrusted source an execution has read from, once it has (the data-flow guard);
/// shared by an execution and the skills it calls.
pub type Taint = std::sync::Arc<std::sync::Mutex<Option<String>>>;

tokio::task_local! {
    static CALLER: Caller;
}

/// Runs `call` (a built-in tool call) on behalf of `caller`.
pub(crate) async fn on_behalf_of<F: Future>(caller: Caller, call: F) -> F::Output {
    CALLER.scope(caller, call).await
}

impl Caller {
    /// The caller of the built-in call being answered; `None` outside one.
    pub fn current() -> Option<Caller> {
        CALLER.try_with(Clone::clone).ok()
    }
}

/// A namespace of built-in tools that changes while the server runs (saved skills).
pub trait ToolSource: Send + Sync + std::fmt::Debug {
    /// Changes whenever [`Self::tools`] would answer differently.
    fn generation(&self) -> u64;
    /// The tools as of now.
    fn tools(&self) -> Arc<Vec<BuiltinTool>>;
}

/// The built-in tools, by namespace.
#[derive(Debug, Clone, Default)]
pub struct Builtins {
    namespaces: BTreeMap<String, Vec<BuiltinTool>>,
    sources: BTreeMap<String, Arc<dyn ToolSource>>,
}

impl Builtins {
    /// No built-in tools.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds `tool` to `namespace` (created on first use).
    pub fn add(&mut self, namespace: impl Into<String>, tool: BuiltinTool) {
        self.namespaces
            .entry(namespace.into())
            .or_default()
            .push(tool);
    }

    /// Adds `namespace`, whose tools `source` gives as they are at each moment.
    pub fn add_source(&mut self, namespace: impl Into<String>, source: Arc<dyn ToolSource>) {
        self.sources.insert(namespace.into(), source);
    }

    /// The namespaces, by name, with their tools as of now.
    pub fn namespaces(&self) -> Vec<(&str, Cow<'_, [BuiltinTool]>)> {
        let mut all: Vec<(&str, Cow<'_, [BuiltinTool]>)> = self
            .namespaces
            .iter()
            .map(|(name, tools)| (name.as_str(), Cow::Borrowed(tools.as_slice())))
            .collect();
        for (name, source) in &self.sources {
            all.push((name.as_str(), Cow::Owned(source.tools().to_vec())));
        }
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }

    /// Changes whenever a namespace's tools change.
    pub fn generation(&self) -> u64 {
        self.sources
            .values()
            .fold(0u64, |sum, source| sum.wrapping_add(source.generation()))
    }

    /// Whether `namespace` is built in.
    pub fn contains(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace) || self.sources.contains_key(namespace)
    }

    /// The handler of `namespace`'s tool whose MCP name is `name`.
    pub(crate) fn handler(&self, namespace: &str, name: &str) -> Option<BuiltinHandler> {
        if let Some(source) = self.sources.get(namespace) {
            return source
                .tools()
                .iter()
                .find(|t| t.tool.name == name)
                .map(|t| t.handler.clone());
        }
        self.namespaces
            .get(namespace)?
            .iter()
            .find(|t| t.tool.name == name)
            .map(|t| t.handler.clone())
    }
}

/// schemars marks Rust integer widths as `format: "uint64"` and the like, which JSON
/// Schema does not define: validating clients (the TypeScript SDK's Ajv) warn on every
/// call. The range is already in `minimum`.
pub fn portable_schema(schema: Arc<JsonObject>) -> Arc<JsonObject> {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                let rust_width = map.get("format").and_then(|f| f.as_str()).is_some_and(|f| {
                    matches!(
                        f,
                        "uint"
                            | "uint8"
                            | "uint16"
                            | "uint32"
                            | "uint64"
                            | "int"
                            | "int8"
                            | "int16"
                            | "int32"
                            | "int64"
                            | "float"
                            | "double"
                    )
                });
                if rust_width {
                    map.remove("format");
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::Value::Object((*schema).clone());
    strip(&mut value);
    match value {
        serde_json::Value::Object(map) => Arc::new(map),
        _ => schema,
    }
}
