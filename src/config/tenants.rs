//! Least privilege per principal (`codemode.tenants`): overlays on the server's policy,
//! egress and limits, each for the principals (or scopes) it names, that can only narrow.

use serde::Deserialize;

use super::{ConfigError, PolicyRule};

/// One overlay of `codemode.tenants`. Every overlay whose `principals` or `scopes` match
/// a request applies to it, all at once: the strictest word of the server's and theirs
/// wins, so no overlay can open what the server (or another overlay) closes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TenantSettings {
    /// How messages name the overlay; `tenants[i]` unless set.
    #[serde(default)]
    pub name: Option<String>,
    /// Globs on principal names (as audit records show them: `alice`, `agent-*`, `local`).
    #[serde(default)]
    pub principals: Vec<String>,
    /// Scopes: a principal whose token carries any of them is matched.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Rules on `server.tool` like `codemode.policy.rules`, first match wins; `allow`
    /// leaves the server's word, `confirm` asks where the server would not, `deny` hides.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    /// What a tool no rule of this overlay matches gets: `allow` (the server's word,
    /// the default), `confirm` or `deny` (only the tools `rules` allow are seen).
    #[serde(default)]
    pub default: TenantDefault,
    /// URL patterns (as in `codemode.egress.rules[].url`) these principals may fetch,
    /// besides what the server's rules require; `[]`: no `fetch`. Unset: the server's.
    #[serde(default)]
    pub egress: Option<Vec<String>>,
    /// Per-execution limits, each at most the server's.
    #[serde(default)]
    pub limits: TenantLimits,
    /// Quotas of each principal it matches, each at most `codemode.quotas`' (no `path`).
    #[serde(default)]
    pub quotas: QuotaSettings,
}

/// Quotas over sliding windows, each principal's own (`codemode.quotas` for every
/// principal, `codemode.tenants[i].quotas` for the ones an overlay matches: the lowest
/// applies). Unset: no quota.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QuotaSettings {
    /// Executions started in the last minute.
    pub executions_per_minute: Option<u64>,
    /// CPU time (user + system, the kernel's count for the isolate thread or worker
    /// process) of the executions of the last hour, in seconds.
    pub cpu_seconds_per_hour: Option<f64>,
    /// Tool calls made (sent to their tool) in the last 24 hours.
    pub tool_calls_per_day: Option<u64>,
    /// Bytes of `fetch` requests and responses in the last 24 hours.
    pub egress_bytes_per_day: Option<u64>,
    /// Executions running at once.
    pub concurrent_executions: Option<u64>,
    /// An SQLite database the windows are kept in, so that a restart does not reset them
    /// (`codemode.quotas` only); without it, memory only.
    #[serde(default)]
    pub path: Option<std::path::PathBuf>,
}

impl QuotaSettings {
    /// The quotas set, as `key value` pairs, for `check-config`.
    pub fn summary(&self) -> Vec<String> {
        let mut set = Vec::new();
        let counts = [
            ("executionsPerMinute", self.executions_per_minute),
            ("toolCallsPerDay", self.tool_calls_per_day),
            ("egressBytesPerDay", self.egress_bytes_per_day),
            ("concurrentExecutions", self.concurrent_executions),
        ];
        for (key, value) in counts {
            if let Some(value) = value {
                set.push(format!("{key} {value}"));
            }
        }
        if let Some(cpu) = self.cpu_seconds_per_hour {
            set.push(format!("cpuSecondsPerHour {cpu}"));
        }
        set
    }

    /// Checks each set quota is in range; `key` is where the section is.
    pub(super) fn validate(&self, key: &str, origin: &str) -> Result<(), ConfigError> {
        let invalid = |name: &str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            path: format!("{key}.{name}"),
            message,
        };
        for (name, value) in [
            ("executionsPerMinute", self.executions_per_minute),
            ("toolCallsPerDay", self.tool_calls_per_day),
            ("egressBytesPerDay", self.egress_bytes_per_day),
            ("concurrentExecutions", self.concurrent_executions),
        ] {
            if value == Some(0) {
                return Err(invalid(
                    name,
                    "0 is out of range: allowed 1 or more (leave it out for no quota)".into(),
                ));
            }
        }
        if let Some(cpu) = self.cpu_seconds_per_hour
            && !(cpu.is_finite() && (0.001..=1e9).contains(&cpu))
        {
            return Err(invalid(
                "cpuSecondsPerHour",
                format!("{cpu} is out of range: allowed 0.001 to 1e9 (seconds)"),
            ));
        }
        Ok(())
    }
}

/// What tools no rule of an overlay matches get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantDefault {
    /// What the server's policy says.
    #[default]
    Allow,
    /// Callable once the user confirms, where the server would allow it.
    Confirm,
    /// Hidden and not callable.
    Deny,
}

/// An overlay's limits on each execution of its principals; each can only lower the
/// server's (`codemode.limits`, flags), under the same key.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TenantLimits {
    /// Wall clock per execution, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Heap cap per isolate, in MiB.
    #[serde(rename = "heapMiB")]
    pub heap_mib: Option<u64>,
    /// Captured console output per execution, in KiB.
    #[serde(rename = "outputKiB")]
    pub output_kib: Option<u64>,
    /// JSON text of the returned value, in KiB.
    #[serde(rename = "resultKiB")]
    pub result_kib: Option<u64>,
    /// Tool calls one execution may make.
    pub tool_calls: Option<u64>,
    /// Calls of any one tool one execution may make.
    pub calls_per_tool: Option<u64>,
    /// Bytes of tool results one execution may receive, in KiB.
    #[serde(rename = "receivedKiB")]
    pub received_kib: Option<u64>,
    /// `fetch` requests one execution may make.
    pub fetches: Option<u64>,
    /// Characters of one execution's answer the model reads.
    pub output_chars: Option<u64>,
}

impl TenantLimits {
    /// Each set limit with its key and the bounds `codemode.limits` has for it.
    pub fn entries(&self) -> [(&'static str, Option<u64>); 9] {
        [
            ("timeoutMs", self.timeout_ms),
            ("heapMiB", self.heap_mib),
            ("outputKiB", self.output_kib),
            ("resultKiB", self.result_kib),
            ("toolCalls", self.tool_calls),
            ("callsPerTool", self.calls_per_tool),
            ("receivedKiB", self.received_kib),
            ("fetches", self.fetches),
            ("outputChars", self.output_chars),
        ]
    }
}

impl TenantSettings {
    /// How messages name overlay `index`.
    pub fn label(&self, index: usize) -> String {
        match &self.name {
            Some(name) => format!("codemode.tenants[{index}] ({name})"),
            None => format!("codemode.tenants[{index}]"),
        }
    }

    /// Checks what serde cannot: an overlay that matches nobody, limits out of range.
    pub(super) fn validate(&self, index: usize, origin: &str) -> Result<(), ConfigError> {
        let invalid = |path: String, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            path,
            message,
        };
        if self.principals.is_empty() && self.scopes.is_empty() {
            return Err(invalid(
                format!("codemode.tenants[{index}]"),
                "matches nobody: name the principals it is for (\"principals\": [\"alice\", \"agent-*\"]) or the scopes (\"scopes\": [\"codemode:read\"]); \"principals\": [\"*\"] is everyone".into(),
            ));
        }
        if let Some(name) = &self.name
            && !(1..=64).contains(&name.chars().count())
        {
            return Err(invalid(
                format!("codemode.tenants[{index}].name"),
                "must be 1 to 64 characters".into(),
            ));
        }
        self.quotas
            .validate(&format!("codemode.tenants[{index}].quotas"), origin)?;
        if self.quotas.path.is_some() {
            return Err(invalid(
                format!("codemode.tenants[{index}].quotas.path"),
                "the windows are kept in one place for every principal: set codemode.quotas.path instead".into(),
            ));
        }
        for (key, value) in self.limits.entries() {
            if let Some(value) = value
                && let Some((least, most)) = super::limits::bounds(key)
                && !(least..=most).contains(&value)
            {
                return Err(invalid(
                    format!("codemode.tenants[{index}].limits.{key}"),
                    format!("{value} is out of range: allowed {least} to {most}"),
                ));
            }
        }
        Ok(())
    }
}
