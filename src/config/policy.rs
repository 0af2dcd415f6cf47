//! Which tool calls run, which are asked about, which are refused, and the data-flow guard
//! (`codemode.policy`).

use std::time::Duration;

use serde::Deserialize;

/// The `codemode.policy` section: rules tried in order, the first that matches decides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySettings {
    /// `{"tools": "<glob on server.tool>", "action": "allow" | "deny" | "confirm"}`.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    /// What a tool no rule matches gets.
    #[serde(default)]
    pub default: DefaultAction,
    /// The data-flow guard: what may be sent out once untrusted data was read.
    #[serde(default)]
    pub data_flow: DataFlowSettings,
    /// How deep executions may nest when an upstream is itself a code-mode server
    /// (default 2: a program may call a code-mode upstream whose program calls one more).
    #[serde(default = "PolicySettings::default_max_depth")]
    pub max_depth: u32,
    /// How long a confirmation waits for the user's answer, in milliseconds (default 5
    /// minutes); past it the call is refused, saying nobody answered.
    #[serde(default = "PolicySettings::default_approval_timeout_ms")]
    pub approval_timeout_ms: u64,
}

impl PolicySettings {
    fn default_max_depth() -> u32 {
        2
    }

    fn default_approval_timeout_ms() -> u64 {
        300_000
    }

    /// How long a confirmation waits for its answer.
    pub fn approval_timeout(&self) -> Duration {
        Duration::from_millis(self.approval_timeout_ms)
    }
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default: DefaultAction::default(),
            data_flow: DataFlowSettings::default(),
            max_depth: Self::default_max_depth(),
            approval_timeout_ms: Self::default_approval_timeout_ms(),
        }
    }
}

/// The `codemode.policy.dataFlow` section. Untrusted sources are, by default, tools with
/// `openWorldHint` and every `fetch` response; sinks are `fetch` and tools with
/// `destructiveHint` or `openWorldHint`. Globs name `server.tool`, or `fetch`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DataFlowSettings {
    /// What a sink call gets once the execution read from an untrusted source.
    #[serde(default)]
    pub mode: DataFlowMode,
    /// More untrusted sources.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Trusted after all, whatever their annotations say.
    #[serde(default)]
    pub not_sources: Vec<String>,
    /// More sinks.
    #[serde(default)]
    pub sinks: Vec<String>,
    /// Not sinks after all, whatever their annotations say.
    #[serde(default)]
    pub not_sinks: Vec<String>,
}

/// What a sink call gets once the execution read untrusted data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFlowMode {
    /// The user confirms it (refused where nobody can be asked).
    #[default]
    Confirm,
    /// Refused.
    Deny,
    /// No guard.
    Off,
}

/// One policy rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// A glob on `server.tool` (the `mcpServers` key and the tool's MCP name, or the
    /// names programs use), e.g. `github.delete_*` or `*.write_file`.
    pub tools: String,
    /// What matching tools get.
    pub action: PolicyAction,
}

/// What a rule gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    /// Callable.
    Allow,
    /// Not callable, and left out of the declarations.
    Deny,
    /// Callable once the user confirms (MCP elicitation).
    Confirm,
}

/// What a tool no rule matches gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// From the tool's MCP annotations: `destructiveHint` needs confirmation, anything
    /// else (`readOnlyHint`, no hint) is allowed.
    #[default]
    Annotations,
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
    /// Needs confirmation.
    Confirm,
}
