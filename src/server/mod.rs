//! The MCP server: the `execute_code` tool over rmcp, on stdio (and, later, HTTP).

mod render;

use std::{sync::Arc, time::Duration};

use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{
        CallToolResult, ContentBlock, Implementation, JsonObject, ServerCapabilities, ServerConfig,
    },
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::executor::Executor;

pub use render::{ErrorReport, ExecuteCodeOutput, output as render_output, text as render_text};

/// The `execute_code` description: the program's contract, written for the model.
pub const EXECUTE_CODE_DESCRIPTION: &str = include_str!("execute_code.md");

/// Server instructions sent at initialisation.
pub const INSTRUCTIONS: &str = include_str!("instructions.md");

/// Input of `execute_code`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteCodeInput {
    /// The program: TypeScript or JavaScript, run as the body of an async function. Use `await` freely and `return` the result.
    pub code: String,
    /// Wall-clock limit for this run in milliseconds. It can lower the server's limit, never raise it.
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
}

impl ExecuteCodeInput {
    /// Reads the arguments of a call; the error names the key path and what is allowed.
    fn parse(arguments: JsonObject) -> Result<Self, String> {
        const EXPECTED: &str =
            "execute_code takes {\"code\": string, \"timeoutMs\"?: integer >= 1}";
        let input: Self = serde_path_to_error::deserialize(serde_json::Value::Object(arguments))
            .map_err(|err| match err.path().to_string().as_str() {
                "." => format!("invalid arguments: {}; {EXPECTED}", err.inner()),
                path => format!("invalid argument {path}: {}; {EXPECTED}", err.inner()),
            })?;
        if input.timeout_ms == Some(0) {
            return Err(format!(
                "invalid argument timeoutMs: must be at least 1 (milliseconds), or omitted to use the server's limit; {EXPECTED}"
            ));
        }
        Ok(input)
    }
}

/// The code-mode MCP server.
#[derive(Debug, Clone)]
pub struct CodeModeServer {
    executor: Arc<Executor>,
    tool_router: ToolRouter<Self>,
}

/// The output schema of `execute_code`, derived from [`ExecuteCodeOutput`].
pub fn execute_code_output_schema() -> Arc<JsonObject> {
    rmcp::handler::server::tool::schema_for_output::<ExecuteCodeOutput>()
}

#[tool_router]
impl CodeModeServer {
    /// A server that runs programs on `executor`.
    pub fn new(executor: Arc<Executor>) -> Self {
        Self {
            executor,
            tool_router: Self::tool_router(),
        }
    }

    // The arguments arrive untyped so that a bad one is reported with its key path; the
    // schema the client sees is still derived from `ExecuteCodeInput`.
    #[tool(
        name = "execute_code",
        title = "Run a code-mode program",
        description = EXECUTE_CODE_DESCRIPTION,
        input_schema = rmcp::handler::server::common::schema_for_type::<ExecuteCodeInput>(),
        output_schema = execute_code_output_schema()
    )]
    async fn execute_code(
        &self,
        Parameters(arguments): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let input = match ExecuteCodeInput::parse(arguments) {
            Ok(input) => input,
            Err(message) => return Ok(CallToolResult::error(vec![ContentBlock::text(message)])),
        };
        let timeout = input.timeout_ms.map(Duration::from_millis);
        tokio::select! {
            execution = self.executor.execute(&input.code, timeout) => {
                Ok(render::call_tool_result(&execution))
            }
            // Dropping the execution future stops the isolate.
            () = context.ct.cancelled() => {
                Err(McpError::internal_error("the request was cancelled by the client", None))
            }
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for CodeModeServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }
}
