//! Tools written in Rust by the program embedding codemode-mcp. They join the catalog as
//! their own namespace and take the same path as upstream tools: declarations, argument
//! validation against their schema, the call record; only the call itself stays in
//! process.

use std::{collections::BTreeMap, future::Future, sync::Arc};

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

/// The built-in tools, by namespace.
#[derive(Debug, Clone, Default)]
pub struct Builtins {
    namespaces: BTreeMap<String, Vec<BuiltinTool>>,
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

    /// The namespaces, by name.
    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &[BuiltinTool])> {
        self.namespaces
            .iter()
            .map(|(name, tools)| (name.as_str(), tools.as_slice()))
    }

    /// Whether `namespace` is built in.
    pub fn contains(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    /// The handler of `namespace`'s tool whose MCP name is `name`.
    pub(crate) fn handler(&self, namespace: &str, name: &str) -> Option<BuiltinHandler> {
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
