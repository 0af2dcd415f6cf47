//! Which tools programs may call: `codemode.policy` rules (globs on `server.tool`, first
//! match wins, defaults from MCP tool annotations). A denied tool is left out of the
//! catalog, so programs and the model never see it; a tool that needs confirmation asks
//! the user through a [`Confirmer`] (the MCP server's asks through elicitation) at each
//! call, approved once or for the rest of the execution.

use std::sync::Arc;

use futures::future::BoxFuture;
use globset::{Glob, GlobMatcher};
use rmcp::model::Tool;

use crate::config::{DefaultAction, PolicyAction, PolicySettings};

/// What the policy says of one tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Callable.
    Allow,
    /// Callable once the user confirms.
    Confirm,
    /// Hidden and not callable.
    Deny,
}

/// A bad rule.
#[derive(Debug, thiserror::Error)]
#[error(
    "codemode.policy.rules[{index}].tools: {glob:?} is not a glob ({reason}); write e.g. \"github.delete_*\" or \"*.write_file\""
)]
pub struct PolicyError {
    index: usize,
    glob: String,
    reason: String,
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<(GlobMatcher, Access)>,
    default: DefaultAction,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default: DefaultAction::Annotations,
        }
    }
}

impl Policy {
    /// Compiles the rules of `settings`.
    pub fn new(settings: &PolicySettings) -> Result<Self, PolicyError> {
        let rules = settings
            .rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let glob = Glob::new(&rule.tools).map_err(|e| PolicyError {
                    index,
                    glob: rule.tools.clone(),
                    reason: e.kind().to_string(),
                })?;
                let access = match rule.action {
                    PolicyAction::Allow => Access::Allow,
                    PolicyAction::Deny => Access::Deny,
                    PolicyAction::Confirm => Access::Confirm,
                };
                Ok((glob.compile_matcher(), access))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            rules,
            default: settings.default,
        })
    }

    /// The access to `tool` of `server`, which programs call as `namespace.js_name`.
    pub fn access(&self, server: &str, tool: &Tool, namespace: &str, js_name: &str) -> Access {
        let by_mcp_name = format!("{server}.{}", tool.name);
        let by_js_name = format!("{namespace}.{js_name}");
        for (glob, access) in &self.rules {
            if glob.is_match(&by_mcp_name) || glob.is_match(&by_js_name) {
                return *access;
            }
        }
        match self.default {
            DefaultAction::Allow => Access::Allow,
            DefaultAction::Deny => Access::Deny,
            DefaultAction::Confirm => Access::Confirm,
            DefaultAction::Annotations => {
                let destructive = tool
                    .annotations
                    .as_ref()
                    .and_then(|a| a.destructive_hint)
                    .unwrap_or(false);
                let read_only = tool
                    .annotations
                    .as_ref()
                    .and_then(|a| a.read_only_hint)
                    .unwrap_or(false);
                if destructive && !read_only {
                    Access::Confirm
                } else {
                    Access::Allow
                }
            }
        }
    }
}

/// One call waiting for the user's word.
#[derive(Debug, Clone)]
pub struct ConfirmRequest {
    /// `namespace.tool`, as the program called it.
    pub tool: String,
    /// The arguments, as JSON.
    pub arguments: String,
}

/// The user's word on a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// This call only.
    Once,
    /// This call and every later call of the same tool in this execution.
    ForExecution,
    /// No; why, for the program's `ToolError`.
    Denied(String),
}

/// Asks the user to confirm a call.
pub trait Confirmer: Send + Sync {
    /// Asks about `request`.
    fn confirm(&self, request: ConfirmRequest) -> BoxFuture<'static, Confirmation>;
}

/// A shared [`Confirmer`].
pub type SharedConfirmer = Arc<dyn Confirmer>;
