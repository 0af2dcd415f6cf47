//! Finding a call's tool and checking its arguments, before anything is asked or sent.

use std::sync::Arc;

use rmcp::model::JsonObject;
use serde_json::Value;

use super::{CallHost, fail};
use crate::{
    catalog::{BuiltinHandler, CatalogTool},
    record::Decision,
    sandbox::{ToolCall, ToolReply},
    upstream::Upstream,
};

/// Who answers a call.
pub(super) enum Target {
    Builtin(BuiltinHandler),
    Upstream(Arc<Upstream>, String),
}

/// A call whose tool exists, is reachable, and accepts its arguments.
pub(super) struct Found {
    pub(super) tool: Arc<CatalogTool>,
    pub(super) arguments: JsonObject,
    pub(super) target: Target,
}

impl CallHost {
    /// The tool `call` names, its arguments checked against its schema, and who answers
    /// it; or why not (the decision for the record, and the reply the program gets).
    pub(super) fn lookup(
        &self,
        call: &ToolCall,
        shown_as: &str,
    ) -> Result<Found, (Decision, ToolReply)> {
        let refuse =
            |decision, message: String, schema_path| (decision, fail(message, schema_path));
        let Some(tool) = self.catalog.find(&call.namespace, &call.tool).cloned() else {
            return Err(refuse(
                Decision::NoSuchTool,
                format!("{shown_as} does not exist"),
                None,
            ));
        };
        let Ok(Value::Object(arguments)) = serde_json::from_str(&call.arguments) else {
            return Err(refuse(
                Decision::InvalidArguments,
                format!("{shown_as}: the arguments must be one JSON object"),
                None,
            ));
        };
        let arguments = Value::Object(arguments);
        if let Err(invalid) = tool.validate(&arguments) {
            return Err(refuse(
                Decision::InvalidArguments,
                format!(
                    "{shown_as}: invalid arguments: {} (search_tools shows its declaration)",
                    invalid.message
                ),
                Some(invalid.schema_path),
            ));
        }
        let Value::Object(arguments) = arguments else {
            return Err(refuse(
                Decision::InvalidArguments,
                format!("{shown_as}: bad arguments"),
                None,
            ));
        };
        let target = if tool.builtin {
            let Some(handler) = self.builtins.handler(&tool.upstream, &tool.mcp_name) else {
                return Err(refuse(
                    Decision::Unavailable,
                    format!("{shown_as} is gone"),
                    None,
                ));
            };
            Target::Builtin(handler)
        } else {
            let Some(upstream) = self.upstreams.get(&tool.upstream) else {
                return Err(refuse(
                    Decision::Unavailable,
                    format!("{shown_as}: its server is gone"),
                    None,
                ));
            };
            Target::Upstream(upstream.clone(), tool.mcp_name.clone())
        };
        Ok(Found {
            tool,
            arguments,
            target,
        })
    }
}
