//! Which tools programs may call: `codemode.policy` rules (globs on `server.tool`, first
//! match wins, defaults from MCP tool annotations). A denied tool is left out of the
//! catalog, so programs and the model never see it; a tool that needs confirmation asks
//! the user through a [`Confirmer`] (the MCP server's asks through elicitation) at each
//! call, approved once or for the rest of the execution.
//!
//! The data-flow guard is here too: which tools (and `fetch`) are untrusted sources and
//! which are sinks. Once an execution has read from a source, each sink call needs the
//! user's confirmation (or is refused). It is coarse on purpose: it follows the execution,
//! not the value, so it cannot be fooled by copying data around, and it cannot tell a
//! harmless sink call from a leak either; it does not see what a tool does with its
//! arguments, nor data that reached the program before the execution (in its code).
//!
//! What is decided of each call, from all of that, is decided in [`gate`].

pub mod gate;

use std::sync::Arc;

use futures::future::BoxFuture;
use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};
use rmcp::model::Tool;

pub use crate::config::DataFlowMode;
use crate::{
    config::{DefaultAction, PolicyAction, PolicySettings},
    transpile::Position,
};

/// The name `fetch` goes by in the data-flow globs.
pub const FETCH: &str = "fetch";

/// What the data-flow guard says of one tool (or of `fetch`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flow {
    /// Its results are untrusted: once read, sinks need confirmation.
    pub source: bool,
    /// It can send data out of reach.
    pub sink: bool,
}

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

impl Access {
    /// The stricter of two words: deny over confirm over allow.
    pub fn stricter(self, other: Access) -> Access {
        let rank = |access| match access {
            Access::Allow => 0,
            Access::Confirm => 1,
            Access::Deny => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// The rules of one tenant overlay (`codemode.tenants[i]`): what they say of a tool is
/// weighed against what the server's policy says, and the stricter wins, so an overlay
/// can only narrow.
#[derive(Debug, Clone)]
pub struct Narrowing {
    rules: Vec<(GlobMatcher, Access)>,
    default: Access,
}

impl Narrowing {
    /// Rules tried in order (first match wins), and what a tool none matches gets.
    pub fn new(rules: Vec<(GlobMatcher, Access)>, default: Access) -> Self {
        Self { rules, default }
    }

    fn access(&self, names: &[String; 2]) -> Access {
        self.rules
            .iter()
            .find(|(glob, _)| names.iter().any(|name| glob.is_match(name)))
            .map_or(self.default, |(_, access)| *access)
    }
}

/// A bad rule.
#[derive(Debug, thiserror::Error)]
#[error(
    "codemode.policy.{key}: {glob:?} is not a glob ({reason}); write e.g. \"github.delete_*\" or \"*.write_file\""
)]
pub struct PolicyError {
    key: String,
    glob: String,
    reason: String,
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<(GlobMatcher, Access)>,
    default: DefaultAction,
    data_flow: DataFlowMode,
    sources: GlobSet,
    not_sources: GlobSet,
    sinks: GlobSet,
    not_sinks: GlobSet,
    max_depth: u32,
    /// The overlays of the principal this policy is for; none: the server's own.
    narrowed_by: Vec<Arc<Narrowing>>,
}

impl Default for Policy {
    fn default() -> Self {
        Self::new(&PolicySettings::default()).unwrap_or_else(|_| unreachable!())
    }
}

fn glob_set(globs: &[String], key: &str) -> Result<GlobSet, PolicyError> {
    let mut set = GlobSetBuilder::new();
    for (index, glob) in globs.iter().enumerate() {
        set.add(Glob::new(glob).map_err(|e| PolicyError {
            key: format!("dataFlow.{key}[{index}]"),
            glob: glob.clone(),
            reason: e.kind().to_string(),
        })?);
    }
    set.build().map_err(|e| PolicyError {
        key: format!("dataFlow.{key}"),
        glob: globs.join(", "),
        reason: e.to_string(),
    })
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
                    key: format!("rules[{index}].tools"),
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
        let flow = &settings.data_flow;
        Ok(Self {
            rules,
            default: settings.default,
            data_flow: flow.mode,
            sources: glob_set(&flow.sources, "sources")?,
            not_sources: glob_set(&flow.not_sources, "notSources")?,
            sinks: glob_set(&flow.sinks, "sinks")?,
            not_sinks: glob_set(&flow.not_sinks, "notSinks")?,
            max_depth: settings.max_depth,
            narrowed_by: Vec::new(),
        })
    }

    /// This policy narrowed by `overlays` (a principal's): see [`Self::narrow`].
    pub fn narrowed(&self, overlays: Vec<Arc<Narrowing>>) -> Self {
        Self {
            narrowed_by: overlays,
            ..self.clone()
        }
    }

    /// Whether overlays narrow this policy.
    pub fn is_narrowed(&self) -> bool {
        !self.narrowed_by.is_empty()
    }

    /// Whether the overlays would deny any tool of `server` (known to programs as
    /// `namespace`) whose name they do not name: what hides a namespace that lists no
    /// tools now.
    pub fn hides_namespace(&self, server: &str, namespace: &str) -> bool {
        let names = [format!("{server}."), format!("{namespace}.")];
        self.narrowed_by
            .iter()
            .any(|overlay| overlay.access(&names) == Access::Deny)
    }

    /// What the overlays this policy is narrowed by make of `access`, the server's word on
    /// `tool` of `server`: the strictest of them all. The catalog hides what they deny
    /// (unlike what the server denies, which programs are told is denied): a principal
    /// does not learn of tools it may not see.
    pub fn narrow(
        &self,
        access: Access,
        server: &str,
        tool: &Tool,
        namespace: &str,
        js_name: &str,
    ) -> Access {
        if self.narrowed_by.is_empty() {
            return access;
        }
        let names = [
            format!("{server}.{}", tool.name),
            format!("{namespace}.{js_name}"),
        ];
        self.narrowed_by.iter().fold(access, |access, overlay| {
            access.stricter(overlay.access(&names))
        })
    }

    /// What the data-flow guard does once an execution read untrusted data.
    pub fn data_flow(&self) -> DataFlowMode {
        self.data_flow
    }

    /// How deep executions may nest through code-mode upstreams.
    pub fn max_depth(&self) -> u32 {
        self.max_depth
    }

    /// Whether `tool` of `server` is an untrusted source or a sink. Defaults from its
    /// annotations: `openWorldHint` makes both, `destructiveHint` a sink.
    pub fn flow(&self, server: &str, tool: &Tool, namespace: &str, js_name: &str) -> Flow {
        let names = [
            format!("{server}.{}", tool.name),
            format!("{namespace}.{js_name}"),
        ];
        let hint = |get: fn(&rmcp::model::ToolAnnotations) -> Option<bool>| {
            tool.annotations.as_ref().and_then(get).unwrap_or(false)
        };
        let open_world = hint(|a| a.open_world_hint);
        let destructive = hint(|a| a.destructive_hint) && !hint(|a| a.read_only_hint);
        self.decide(&names, open_world, open_world || destructive)
    }

    /// The same for `fetch`: by default both a source and a sink.
    pub fn fetch_flow(&self) -> Flow {
        self.decide(&[FETCH.to_string()], true, true)
    }

    fn decide(&self, names: &[String], source: bool, sink: bool) -> Flow {
        let any = |set: &GlobSet| names.iter().any(|n| set.is_match(n));
        Flow {
            source: !any(&self.not_sources) && (source || any(&self.sources)),
            sink: !any(&self.not_sinks) && (sink || any(&self.sinks)),
        }
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

/// One call (or, before a program runs, the tools it names) waiting for the user's word.
#[derive(Debug, Clone)]
pub struct ConfirmRequest {
    /// `namespace.tool`, as the program called it; `fetch METHOD URL` for a fetch; a
    /// list of tools when the whole program is confirmed up front.
    pub tool: String,
    /// The arguments, as JSON (empty when the program is confirmed up front).
    pub arguments: String,
    /// The program's line that makes the call, when known.
    pub site: Option<Position>,
    /// Why the user is asked, when it is not the tool's own rule (the data-flow guard).
    pub reason: Option<String>,
    /// Asked before the program runs (the tools it names), not at a call it makes.
    pub before_run: bool,
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
    /// Not yet: the question goes to the client in the answer to this request (an MCP
    /// 2026-07-28 `input_required` result), and nothing runs until its retry brings the
    /// word. Only a question asked before the run can wait so.
    Deferred,
}

/// Asks the user to confirm a call.
pub trait Confirmer: Send + Sync {
    /// Asks about `request`.
    fn confirm(&self, request: ConfirmRequest) -> BoxFuture<'static, Confirmation>;

    /// Whether anybody can be asked at all (an MCP client without elicitation cannot);
    /// the program is confirmed up front only when so.
    fn can_ask(&self) -> bool {
        true
    }
}

/// A shared [`Confirmer`].
pub type SharedConfirmer = Arc<dyn Confirmer>;
