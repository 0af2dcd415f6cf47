//! The config file: Claude Desktop's `mcpServers` object as is, plus a `codemode` section
//! with this server's own settings. Unknown keys and bad values are errors that name the key
//! path, so a typo never silently disables anything.

pub mod nesting;
mod servers;

use std::{collections::BTreeMap, path::Path, time::Duration};

use serde::Deserialize;

pub use servers::{ServerEntry, Transport, UpstreamConfig, expand_vars};

use crate::sandbox::Limits;

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON, or a key or value is not allowed.
    #[error("{origin}: {path}: {message}")]
    Invalid {
        /// The file, or `config` for a value given in code.
        origin: String,
        /// The key path, such as `codemode.limits.timeoutMs`.
        path: String,
        /// What was wrong and what is allowed.
        message: String,
    },
}

/// The whole config file: any MCP client's, with a `codemode` section added. Keys other
/// clients keep beside their servers (Claude Desktop's `preferences`, VS Code's `inputs`)
/// are warned about and ignored; inside `codemode`, an unknown key is an error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// Upstream MCP servers in the format Claude Desktop and other clients use.
    #[serde(default)]
    pub mcp_servers: BTreeMap<String, ServerEntry>,
    /// The same, as VS Code's `mcp.json` names them.
    #[serde(default)]
    pub servers: BTreeMap<String, ServerEntry>,
    /// This server's own settings.
    #[serde(default)]
    pub codemode: CodemodeSection,
    /// Every other top-level key.
    #[serde(flatten)]
    pub ignored: BTreeMap<String, serde_json::Value>,
    /// What of the file was ignored, or mapped with a caveat, one line each; logged at
    /// start and printed by `check-config`.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// `mcp_servers` resolved (`${VAR}` expanded, transports decided), disabled ones left out.
    #[serde(skip)]
    pub upstreams: Vec<UpstreamConfig>,
    /// Entries of `mcp_servers` left out of `upstreams` because they would start
    /// code-mode servers in a loop (see [`nesting`]).
    #[serde(skip)]
    pub skipped: Vec<nesting::SkippedUpstream>,
}

/// The `codemode` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CodemodeSection {
    /// The JS engine programs run on (`quickjs`, or `deno` in a binary built with it); the
    /// command line's `--engine` overrides it.
    #[serde(default, deserialize_with = "engine_name")]
    pub engine: Option<crate::sandbox::EngineKind>,
    /// Per-execution limits and the concurrency cap.
    #[serde(default)]
    pub limits: LimitSettings,
    /// How upstream servers are connected and called.
    #[serde(default)]
    pub upstream: UpstreamSettings,
    /// The hash-chained audit log; off unless a path is given.
    #[serde(default)]
    pub audit: AuditSettings,
    /// Which tools programs may call, and which need the user's confirmation.
    #[serde(default)]
    pub policy: PolicySettings,
    /// What `fetch` may reach; without rules programs have no `fetch`.
    #[serde(default)]
    pub egress: EgressSettings,
    /// When an execution is flagged as anomalous.
    #[serde(default)]
    pub anomalies: AnomalySettings,
    /// Metrics, traces and the operator console.
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    /// Return types learned from the results of tools that declare none.
    #[serde(default)]
    pub learned_types: LearnedTypesSettings,
    /// Session state: a key-value store per MCP session (`tools.state`), off by default.
    #[serde(default)]
    pub state: StateSettings,
    /// `execute_code` as an MCP task, for clients that declare the tasks extension.
    #[serde(default)]
    pub tasks: TaskSettings,
    /// Type-checking programs before they run.
    #[serde(default)]
    pub typecheck: TypecheckSettings,
    /// Saved skills: programs promoted to tools; off unless a directory is given.
    #[serde(default)]
    pub skills: SkillSettings,
    /// The time zone of programs' local time in worker processes (an IANA name such as
    /// `Europe/Oslo`); UTC unless set.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Our environment variables every server started by command gets besides the minimal
    /// environment, by name (each entry's `inheritEnv` adds to these).
    #[serde(default)]
    pub inherit_env: Vec<String>,
}

impl CodemodeSection {
    /// The time zone programs' local time is in.
    pub fn time_zone(&self) -> &str {
        self.time_zone.as_deref().unwrap_or("UTC")
    }
}

/// Where the system keeps its time zones (Debian's tzdata).
const ZONEINFO: &str = "/usr/share/zoneinfo";

/// Checks `codemode.timeZone`: a zone the system has, named without tricks.
fn validate_time_zone(zone: &str, origin: &str) -> Result<(), ConfigError> {
    let well_formed = !zone.is_empty()
        && zone.len() <= 64
        && zone
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'))
        && !zone.starts_with('/')
        && !zone.split('/').any(|part| part.is_empty());
    let known = zone == "UTC" || std::path::Path::new(ZONEINFO).join(zone).is_file();
    if well_formed && known {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        origin: origin.to_string(),
        path: "codemode.timeZone".into(),
        message: format!(
            "{zone:?} is not a time zone this system has: use an IANA name from {ZONEINFO}, such as \"Europe/Oslo\" or \"America/New_York\", or \"UTC\""
        ),
    })
}

/// The `codemode.skills` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SkillSettings {
    /// The directory skills are kept in, as plain files (one folder per skill, one `.ts`
    /// and one `.json` per version). Without it there are no skills.
    #[serde(default)]
    pub path: Option<std::path::PathBuf>,
    /// Whether each skill is also an MCP tool of this server (`skill_<name>`).
    #[serde(default)]
    pub as_tools: bool,
    /// Skills kept at once; saving a new one past it is refused.
    #[serde(default = "SkillSettings::default_max_skills")]
    pub max_skills: usize,
}

impl SkillSettings {
    fn default_max_skills() -> usize {
        200
    }
}

impl Default for SkillSettings {
    fn default() -> Self {
        Self {
            path: None,
            as_tools: false,
            max_skills: Self::default_max_skills(),
        }
    }
}

/// The `codemode.typecheck` section: `execute_code { typecheck: true }` checks the program
/// against the tools' declarations with TypeScript's compiler before anything runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TypecheckSettings {
    /// Whether programs are checked when a call does not say (`typecheck` omitted).
    #[serde(default, rename = "default")]
    pub by_default: bool,
    /// The `tsc` to run (TypeScript 7's native one is fastest); default: `tsc` on `PATH`.
    #[serde(default)]
    pub tsc: Option<std::path::PathBuf>,
    /// Wall clock of one check, in milliseconds.
    #[serde(default = "TypecheckSettings::default_timeout_ms")]
    pub timeout_ms: u64,
}

impl TypecheckSettings {
    fn default_timeout_ms() -> u64 {
        10_000
    }
}

impl Default for TypecheckSettings {
    fn default() -> Self {
        Self {
            by_default: false,
            tsc: None,
            timeout_ms: Self::default_timeout_ms(),
        }
    }
}

/// The `codemode.tasks` section. A client that declares the tasks extension gets a task
/// handle from `execute_code` at once and polls for the result; such a run has its own
/// wall clock, in minutes rather than seconds. Clients without the extension are unaffected.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskSettings {
    /// Whether `execute_code` runs as a task for clients that can take one.
    #[serde(default = "TaskSettings::default_enabled")]
    pub enabled: bool,
    /// Wall clock of a program run as a task, in milliseconds (instead of
    /// `codemode.limits.timeoutMs`; a call's `timeoutMs` may lower it).
    #[serde(default = "TaskSettings::default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long a finished task's result stays readable, in milliseconds.
    #[serde(default = "TaskSettings::default_keep_ms")]
    pub keep_ms: u64,
    /// Tasks one session may have running at once; past it, `busy`.
    #[serde(default = "TaskSettings::default_max_running")]
    pub max_running: usize,
}

impl TaskSettings {
    fn default_enabled() -> bool {
        true
    }

    fn default_timeout_ms() -> u64 {
        600_000
    }

    fn default_keep_ms() -> u64 {
        600_000
    }

    fn default_max_running() -> usize {
        8
    }

    /// The wall clock of a task's program.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        for (key, value, least, most) in [
            ("timeoutMs", self.timeout_ms, 10, 86_400_000),
            ("keepMs", self.keep_ms, 1_000, 86_400_000),
            ("maxRunning", self.max_running as u64, 1, 4_096),
        ] {
            if !(least..=most).contains(&value) {
                return Err(ConfigError::Invalid {
                    origin: origin.to_string(),
                    path: format!("codemode.tasks.{key}"),
                    message: format!("{value} is out of range: allowed {least} to {most}"),
                });
            }
        }
        Ok(())
    }
}

impl Default for TaskSettings {
    fn default() -> Self {
        Self {
            enabled: Self::default_enabled(),
            timeout_ms: Self::default_timeout_ms(),
            keep_ms: Self::default_keep_ms(),
            max_running: Self::default_max_running(),
        }
    }
}

/// The `codemode.state` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StateSettings {
    /// Whether programs get `tools.state.get/set/delete/list`.
    #[serde(default)]
    pub enabled: bool,
    /// Keys one session may hold.
    #[serde(default = "StateSettings::default_max_keys")]
    pub max_keys: usize,
    /// Bytes of one value, as JSON text.
    #[serde(default = "StateSettings::default_max_value_bytes")]
    pub max_value_bytes: usize,
    /// Bytes of all one session's values, as JSON text.
    #[serde(default = "StateSettings::default_max_total_bytes")]
    pub max_total_bytes: usize,
    /// An SQLite database the state is kept in, so that it outlives the server process
    /// (a stdio server's one session, and each HTTP session id); without it, memory only.
    #[serde(default)]
    pub path: Option<std::path::PathBuf>,
}

impl StateSettings {
    fn default_max_keys() -> usize {
        1_000
    }

    fn default_max_value_bytes() -> usize {
        64 << 10
    }

    fn default_max_total_bytes() -> usize {
        1 << 20
    }
}

impl Default for StateSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            max_keys: Self::default_max_keys(),
            max_value_bytes: Self::default_max_value_bytes(),
            max_total_bytes: Self::default_max_total_bytes(),
            path: None,
        }
    }
}

/// The `codemode.learnedTypes` section. Return types are always learned in memory; with a
/// `path` they are kept across restarts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LearnedTypesSettings {
    /// The JSON file they are kept in.
    pub path: Option<std::path::PathBuf>,
}

/// The `codemode.anomalies` section: the thresholds of each anomaly flag, per session.
/// A `count` (or the rate's `minimum`) of 0 turns that flag off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AnomalySettings {
    /// `rate`: at least `minimum` executions within `windowSecs`, more than `factor`
    /// times the session's own norm.
    #[serde(default)]
    pub rate: RateRule,
    /// `limit-hits`: `count` executions that hit a limit within `windowSecs`.
    #[serde(default = "AnomalySettings::default_limit_hits")]
    pub limit_hits: CountRule,
    /// `repeat`: the same program `count` times within `windowSecs`.
    #[serde(default = "AnomalySettings::default_repeats")]
    pub repeats: CountRule,
    /// `denied-burst`: `count` calls (or programs) the policy refused within `windowSecs`.
    #[serde(default = "AnomalySettings::default_denied")]
    pub denied: CountRule,
    /// `new-egress-host`: a fetch to a host no earlier execution fetched from.
    #[serde(default = "default_true")]
    pub new_egress_hosts: bool,
}

fn engine_name<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<crate::sandbox::EngineKind>, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse().map(Some).map_err(serde::de::Error::custom)
}

fn default_true() -> bool {
    true
}

impl AnomalySettings {
    fn default_limit_hits() -> CountRule {
        CountRule {
            window_secs: 60,
            count: 3,
        }
    }
    fn default_repeats() -> CountRule {
        CountRule {
            window_secs: 60,
            count: 5,
        }
    }
    fn default_denied() -> CountRule {
        CountRule {
            window_secs: 60,
            count: 5,
        }
    }

    /// The longest window of any rule.
    pub fn longest_window(&self) -> Duration {
        Duration::from_secs(
            [
                self.rate.window_secs,
                self.limit_hits.window_secs,
                self.repeats.window_secs,
                self.denied.window_secs,
            ]
            .into_iter()
            .max()
            .unwrap_or(0),
        )
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            path: format!("codemode.anomalies.{key}"),
            message,
        };
        for (key, secs) in [
            ("rate.windowSecs", self.rate.window_secs),
            ("limitHits.windowSecs", self.limit_hits.window_secs),
            ("repeats.windowSecs", self.repeats.window_secs),
            ("denied.windowSecs", self.denied.window_secs),
        ] {
            if !(1..=86_400).contains(&secs) {
                return Err(invalid(
                    key,
                    format!("{secs} is out of range: allowed 1 to 86400 (seconds)"),
                ));
            }
        }
        if !(self.rate.factor >= 1.0 && self.rate.factor.is_finite()) {
            return Err(invalid(
                "rate.factor",
                format!("{} is out of range: at least 1", self.rate.factor),
            ));
        }
        Ok(())
    }
}

impl Default for AnomalySettings {
    fn default() -> Self {
        Self {
            rate: RateRule::default(),
            limit_hits: Self::default_limit_hits(),
            repeats: Self::default_repeats(),
            denied: Self::default_denied(),
            new_egress_hosts: true,
        }
    }
}

/// A flag raised by `count` events within `windowSecs`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CountRule {
    /// The window, in seconds.
    pub window_secs: u64,
    /// Events within it that raise the flag; 0 turns it off.
    pub count: u32,
}

/// The `rate` flag's rule.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateRule {
    /// The window, in seconds (default 10).
    #[serde(default = "RateRule::default_window_secs")]
    pub window_secs: u64,
    /// How many times the session's norm per window is too many (default 5).
    #[serde(default = "RateRule::default_factor")]
    pub factor: f64,
    /// Fewer executions than this in the window are never flagged; 0 turns the flag off
    /// (default 30).
    #[serde(default = "RateRule::default_minimum")]
    pub minimum: u32,
}

impl RateRule {
    fn default_window_secs() -> u64 {
        10
    }
    fn default_factor() -> f64 {
        5.0
    }
    fn default_minimum() -> u32 {
        30
    }
}

impl Default for RateRule {
    fn default() -> Self {
        Self {
            window_secs: Self::default_window_secs(),
            factor: Self::default_factor(),
            minimum: Self::default_minimum(),
        }
    }
}

/// The `codemode.telemetry` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TelemetrySettings {
    /// Executions the operator console keeps in memory (default 500).
    #[serde(default = "TelemetrySettings::default_recent")]
    pub recent: usize,
    /// OTLP over HTTP, e.g. `http://localhost:4318` (`/v1/traces` is added); off when absent
    /// (the `OTEL_EXPORTER_OTLP_ENDPOINT` variable also turns it on).
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (default) or `http/json`.
    #[serde(default)]
    pub otlp_protocol: Option<String>,
    /// Headers sent to the collector, `${VAR}` expanded (e.g. an API key).
    #[serde(default)]
    pub otlp_headers: BTreeMap<String, String>,
    /// `service.name` of the spans (default `codemode-mcp`).
    #[serde(default)]
    pub service_name: Option<String>,
}

impl TelemetrySettings {
    fn default_recent() -> usize {
        500
    }
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            recent: Self::default_recent(),
            otlp_endpoint: None,
            otlp_protocol: None,
            otlp_headers: BTreeMap::new(),
            service_name: None,
        }
    }
}

/// The `codemode.egress` section: `fetch` for programs, off unless a rule allows a URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressSettings {
    /// URLs programs may fetch, each with the headers the host adds to its requests.
    #[serde(default)]
    pub rules: Vec<EgressRule>,
    /// Largest response body one fetch may return, in KiB (default 1024).
    #[serde(
        rename = "maxResponseKiB",
        default = "EgressSettings::default_max_response_kib"
    )]
    pub max_response_kib: u64,
    /// Time one fetch may take, redirects included, in milliseconds (default 10,000).
    #[serde(default = "EgressSettings::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Redirects one fetch follows, each checked against the rules (default 5).
    #[serde(default = "EgressSettings::default_max_redirects")]
    pub max_redirects: u32,
}

impl EgressSettings {
    fn default_max_response_kib() -> u64 {
        1024
    }
    fn default_timeout_ms() -> u64 {
        10_000
    }
    fn default_max_redirects() -> u32 {
        5
    }
}

impl Default for EgressSettings {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            max_response_kib: Self::default_max_response_kib(),
            timeout_ms: Self::default_timeout_ms(),
            max_redirects: Self::default_max_redirects(),
        }
    }
}

/// URLs `fetch` may reach.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressRule {
    /// `scheme://host[:port][/path]`, where the host may start with `*.` and the path is
    /// a glob (`**` crosses `/`), e.g. `https://api.github.com/repos/**`.
    pub url: String,
    /// Headers the host adds to requests to these URLs, `${VAR}` expanded from the
    /// server's environment; programs never see their values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Lets these URLs reach loopback, private, link-local and metadata addresses, which
    /// are refused otherwise.
    #[serde(default)]
    pub allow_private: bool,
}

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

/// The `codemode.audit` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditSettings {
    /// The JSONL file; none means no audit log.
    pub path: Option<std::path::PathBuf>,
    /// Size past which the file is rotated to `FILE.1`, in bytes (default 64 MiB).
    #[serde(default = "AuditSettings::default_max_bytes")]
    pub max_bytes: u64,
}

impl AuditSettings {
    fn default_max_bytes() -> u64 {
        64 << 20
    }
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            path: None,
            max_bytes: Self::default_max_bytes(),
        }
    }
}

/// The `codemode.upstream` section.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamSettings {
    /// Time one upstream has to start and list its tools, in milliseconds.
    #[serde(default = "UpstreamSettings::default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time one tool call may take, in milliseconds (the execution's own wall clock also
    /// applies).
    #[serde(default = "UpstreamSettings::default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Calls in flight to one upstream at once; more wait their turn.
    #[serde(default = "UpstreamSettings::default_max_concurrent_calls")]
    pub max_concurrent_calls: u32,
    /// The largest message one upstream may send (a tool's result), in KiB; a longer one
    /// is dropped while it is read, and the call it answers fails saying so.
    #[serde(
        default = "UpstreamSettings::default_max_result_kib",
        rename = "maxResultKiB"
    )]
    pub max_result_kib: u64,
}

impl UpstreamSettings {
    fn default_connect_timeout_ms() -> u64 {
        30_000
    }
    fn default_call_timeout_ms() -> u64 {
        60_000
    }
    fn default_max_concurrent_calls() -> u32 {
        16
    }
    fn default_max_result_kib() -> u64 {
        8 << 10
    }

    /// [`Self::max_result_kib`] in bytes.
    pub fn max_result_bytes(&self) -> usize {
        usize::try_from(self.max_result_kib << 10).unwrap_or(usize::MAX)
    }
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            connect_timeout_ms: Self::default_connect_timeout_ms(),
            call_timeout_ms: Self::default_call_timeout_ms(),
            max_concurrent_calls: Self::default_max_concurrent_calls(),
            max_result_kib: Self::default_max_result_kib(),
        }
    }
}

/// Limits as written in the config file or on the command line; unset means the default.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitSettings {
    /// Wall clock per execution, in milliseconds (also the most a request may ask for).
    pub timeout_ms: Option<u64>,
    /// Heap cap per isolate, in MiB.
    #[serde(rename = "heapMiB")]
    pub heap_mib: Option<u64>,
    /// JS stack cap, in KiB.
    #[serde(rename = "stackKiB")]
    pub stack_kib: Option<u64>,
    /// Captured console output per execution, in KiB.
    #[serde(rename = "outputKiB")]
    pub output_kib: Option<u64>,
    /// JSON text of the returned value, in KiB.
    #[serde(rename = "resultKiB")]
    pub result_kib: Option<u64>,
    /// Executions that run at once.
    pub concurrency: Option<u64>,
    /// Executions that may wait for a slot before new ones are refused as busy.
    pub queue: Option<u64>,
    /// Tool calls one execution may make.
    pub tool_calls: Option<u64>,
    /// Calls of any one tool one execution may make.
    pub calls_per_tool: Option<u64>,
    /// Bytes of tool results one execution may receive, in KiB.
    #[serde(rename = "receivedKiB")]
    pub received_kib: Option<u64>,
    /// `fetch` requests one execution may make.
    pub fetches: Option<u64>,
    /// Isolates made ahead of their programs (each used once), at most one per execution
    /// slot; 0 makes every isolate when its program arrives. Default: one per slot.
    pub warm_isolates: Option<u64>,
    /// Microseconds a program waiting on the host (a tool call) keeps its thread polling
    /// before the thread sleeps; 0 sleeps at once (saves CPU, costs each reply a wake).
    /// Default 200.
    pub spin_micros: Option<u64>,
}

/// Bounds of each limit: (key, least, most).
const BOUNDS: &[(&str, u64, u64)] = &[
    ("timeoutMs", 10, 3_600_000),
    ("heapMiB", 4, 16_384),
    ("stackKiB", 64, 8_192),
    ("outputKiB", 1, 1_048_576),
    ("resultKiB", 1, 1_048_576),
    ("concurrency", 1, 4_096),
    ("queue", 0, 1_000_000),
    ("toolCalls", 1, 1_000_000),
    ("callsPerTool", 1, 1_000_000),
    ("receivedKiB", 1, 16_777_216),
    ("fetches", 1, 1_000_000),
    ("warmIsolates", 0, 4_096),
    ("spinMicros", 0, 10_000),
];

impl LimitSettings {
    /// Values set here win over values set in `base`.
    pub fn over(self, base: LimitSettings) -> LimitSettings {
        LimitSettings {
            timeout_ms: self.timeout_ms.or(base.timeout_ms),
            heap_mib: self.heap_mib.or(base.heap_mib),
            stack_kib: self.stack_kib.or(base.stack_kib),
            output_kib: self.output_kib.or(base.output_kib),
            result_kib: self.result_kib.or(base.result_kib),
            concurrency: self.concurrency.or(base.concurrency),
            queue: self.queue.or(base.queue),
            tool_calls: self.tool_calls.or(base.tool_calls),
            calls_per_tool: self.calls_per_tool.or(base.calls_per_tool),
            received_kib: self.received_kib.or(base.received_kib),
            fetches: self.fetches.or(base.fetches),
            warm_isolates: self.warm_isolates.or(base.warm_isolates),
            spin_micros: self.spin_micros.or(base.spin_micros),
        }
    }

    fn entries(&self) -> [(&'static str, Option<u64>); 13] {
        [
            ("timeoutMs", self.timeout_ms),
            ("heapMiB", self.heap_mib),
            ("stackKiB", self.stack_kib),
            ("outputKiB", self.output_kib),
            ("resultKiB", self.result_kib),
            ("concurrency", self.concurrency),
            ("queue", self.queue),
            ("toolCalls", self.tool_calls),
            ("callsPerTool", self.calls_per_tool),
            ("receivedKiB", self.received_kib),
            ("fetches", self.fetches),
            ("warmIsolates", self.warm_isolates),
            ("spinMicros", self.spin_micros),
        ]
    }

    /// Checks every set value against its bounds; `origin` names where it came from.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        for ((key, value), (_, least, most)) in self.entries().into_iter().zip(BOUNDS) {
            if let Some(value) = value
                && !(*least..=*most).contains(&value)
            {
                return Err(ConfigError::Invalid {
                    origin: origin.to_string(),
                    path: format!("codemode.limits.{key}"),
                    message: format!("{value} is out of range: allowed {least} to {most}"),
                });
            }
        }
        Ok(())
    }

    /// The per-execution limits, defaults filled in.
    pub fn limits(&self) -> Limits {
        let d = Limits::default();
        let kib = |v: Option<u64>, default: usize| v.map_or(default, |k| to_usize(k) << 10);
        Limits {
            timeout: self.timeout_ms.map_or(d.timeout, Duration::from_millis),
            heap_bytes: self.heap_mib.map_or(d.heap_bytes, |m| to_usize(m) << 20),
            stack_bytes: kib(self.stack_kib, d.stack_bytes),
            output_bytes: kib(self.output_kib, d.output_bytes),
            result_bytes: kib(self.result_kib, d.result_bytes),
            tool_calls: self
                .tool_calls
                .map_or(d.tool_calls, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            calls_per_tool: self
                .calls_per_tool
                .map_or(d.calls_per_tool, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            received_bytes: kib(self.received_kib, d.received_bytes),
            fetches: self
                .fetches
                .map_or(d.fetches, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }
}

/// `name` as a glob that matches only itself.
fn globset_escape(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '*' | '?' | '[' | ']' | '{' | '}' | '\\' => format!("[{c}]"),
            c => c.to_string(),
        })
        .collect()
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse_in(&text, &path.display().to_string(), Some(path))
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Self::parse_in(text, origin, None)
    }

    /// [`Self::parse`] of the text of `file` (beside which `envFile` and
    /// `${workspaceFolder}` are, and which an entry starting this server names).
    fn parse_in(text: &str, origin: &str, file: Option<&Path>) -> Result<Config, ConfigError> {
        let base_dir = file.and_then(Path::parent);
        let mut de = serde_json::Deserializer::from_str(text);
        let mut config: Config = serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let inner = err.inner();
            if inner.is_syntax() || inner.is_eof() {
                // A syntax error has a place in the text, not a key path.
                let (line, column) = (inner.line(), inner.column());
                let text = inner.to_string();
                let what = text
                    .strip_suffix(&format!(" at line {line} column {column}"))
                    .unwrap_or(&text);
                return ConfigError::Invalid {
                    origin: origin.to_string(),
                    path: format!("line {line}, column {column}"),
                    message: format!("not valid JSON: {what}"),
                };
            }
            ConfigError::Invalid {
                origin: origin.to_string(),
                path: match err.path().to_string().as_str() {
                    "." => "(top level)".to_string(),
                    path => path.to_string(),
                },
                message: inner.to_string(),
            }
        })?;
        de.end().map_err(|err| ConfigError::Invalid {
            origin: origin.to_string(),
            path: "(top level)".to_string(),
            message: err.to_string(),
        })?;
        config.codemode.limits.validate(origin)?;
        let depth = config.codemode.policy.max_depth;
        if depth > nesting::MAX_DEPTH {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                path: "codemode.policy.maxDepth".into(),
                message: format!(
                    "{depth} is out of range: allowed 0 to {}",
                    nesting::MAX_DEPTH
                ),
            });
        }
        let approval = config.codemode.policy.approval_timeout_ms;
        if !(100..=86_400_000).contains(&approval) {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                path: "codemode.policy.approvalTimeoutMs".into(),
                message: format!(
                    "{approval} is out of range: allowed 100 to 86400000 (milliseconds a confirmation waits for the user)"
                ),
            });
        }
        config.codemode.anomalies.validate(origin)?;
        config.codemode.tasks.validate(origin)?;
        if let Some(zone) = &config.codemode.time_zone {
            validate_time_zone(zone, origin)?;
        }
        // rmcp drops a message past 16 MiB unread (the call it answers would wait for
        // ever), so the cap that fails the call must sit below it.
        let result_kib = config.codemode.upstream.max_result_kib;
        if !(1..=16_383).contains(&result_kib) {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                path: "codemode.upstream.maxResultKiB".into(),
                message: format!("{result_kib} is out of range: allowed 1 to 16383"),
            });
        }
        let check_ms = config.codemode.typecheck.timeout_ms;
        if !(1..=600_000).contains(&check_ms) {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                path: "codemode.typecheck.timeoutMs".into(),
                message: format!("{check_ms} is out of range: allowed 1 to 600000"),
            });
        }
        for (i, name) in config.codemode.inherit_env.iter().enumerate() {
            servers::check_inherited_name(name).map_err(|message| ConfigError::Invalid {
                origin: origin.to_string(),
                path: format!("codemode.inheritEnv[{i}]"),
                message,
            })?;
        }
        let env = |name: &str| std::env::var(name).ok();
        let mut warnings = Vec::new();
        for key in config.ignored.keys() {
            if key != "$schema" {
                warnings.push(format!(
                    "{origin}: {key}: ignored (codemode-mcp reads mcpServers or servers, and codemode)"
                ));
            }
        }
        let mut upstreams = Vec::new();
        for (section, entries) in [
            ("mcpServers", &config.mcp_servers),
            ("servers", &config.servers),
        ] {
            let cx = servers::Context {
                origin,
                section,
                base_dir,
                env: &env,
            };
            for (name, entry) in entries.iter().filter(|(_, entry)| !entry.disabled) {
                if section == "servers" && config.mcp_servers.contains_key(name) {
                    return Err(ConfigError::Invalid {
                        origin: origin.to_string(),
                        path: format!("servers.{name}"),
                        message: "is also in mcpServers: give each server once".into(),
                    });
                }
                if entry.sandbox_enabled == Some(true) {
                    warnings.push(format!(
                        "{origin}: {section}.{name}.sandboxEnabled: not started: the entry asks for VS Code's sandbox, which codemode-mcp does not have; remove the key to start it unsandboxed"
                    ));
                    continue;
                }
                upstreams.push(entry.resolve(name, &cx, &mut warnings)?);
            }
        }
        config.upstreams = upstreams;
        // Windsurf's switched-off tools stay off whatever else the policy says.
        let disabled: Vec<PolicyRule> = config
            .upstreams
            .iter()
            .flat_map(|u| {
                u.disabled_tools.iter().map(|tool| PolicyRule {
                    tools: format!("{}.{}", globset_escape(&u.name), globset_escape(tool)),
                    action: PolicyAction::Deny,
                })
            })
            .collect();
        config.codemode.policy.rules.splice(0..0, disabled);
        // Cline's auto-approved tools are called without asking; the config's own rules
        // come first, so a deny rule still wins, and under a default of deny they would
        // open tools nothing else allows.
        for upstream in &config.upstreams {
            for tool in &upstream.auto_approve {
                if config.codemode.policy.default == DefaultAction::Deny {
                    warnings.push(format!(
                        "{origin}: autoApprove of server \"{}\": \"{tool}\" not applied: codemode.policy.default is deny, so only codemode.policy.rules open tools",
                        upstream.name
                    ));
                    continue;
                }
                config.codemode.policy.rules.push(PolicyRule {
                    tools: format!(
                        "{}.{}",
                        globset_escape(&upstream.name),
                        globset_escape(tool)
                    ),
                    action: PolicyAction::Allow,
                });
            }
        }
        config.warnings = warnings;
        let own = nesting::Own {
            config: file,
            level: nesting::level(),
            max_depth: config.codemode.policy.max_depth,
        };
        let (kept, skipped) = nesting::screen(std::mem::take(&mut config.upstreams), &own);
        config.upstreams = kept;
        config.skipped = skipped;
        for upstream in &mut config.upstreams {
            if let Transport::Stdio { inherit_env, .. } = &mut upstream.transport {
                let mut names = config.codemode.inherit_env.clone();
                names.extend(std::mem::take(inherit_env));
                names.sort();
                names.dedup();
                *inherit_env = names;
            }
        }
        let upstream = config.codemode.upstream;
        for (key, value, least) in [
            ("connectTimeoutMs", upstream.connect_timeout_ms, 100),
            ("callTimeoutMs", upstream.call_timeout_ms, 10),
            (
                "maxConcurrentCalls",
                u64::from(upstream.max_concurrent_calls),
                1,
            ),
        ] {
            if value < least {
                return Err(ConfigError::Invalid {
                    origin: origin.to_string(),
                    path: format!("codemode.upstream.{key}"),
                    message: format!("{value} is too small: at least {least}"),
                });
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config's policy rules as (tools, action), in order.
    fn rules(config: &Config) -> Vec<(&str, PolicyAction)> {
        config
            .codemode
            .policy
            .rules
            .iter()
            .map(|r| (r.tools.as_str(), r.action))
            .collect()
    }

    #[test]
    fn unknown_key_names_its_path() {
        let err =
            Config::parse(r#"{"codemode":{"limits":{"timeoutMS":5}}}"#, "c.json").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("codemode.limits"), "{text}");
        assert!(text.contains("timeoutMS"), "{text}");
    }

    #[test]
    fn out_of_range_names_bounds() {
        let err = Config::parse(r#"{"codemode":{"limits":{"heapMiB":1}}}"#, "c.json").unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.json: codemode.limits.heapMiB: 1 is out of range: allowed 4 to 16384"
        );
    }

    #[test]
    fn claude_desktop_config_is_accepted_and_limits_apply() {
        let config = Config::parse(
            r#"{"mcpServers":{"fs":{"command":"npx","args":["x"]}},"codemode":{"limits":{"timeoutMs":500}}}"#,
            "c.json",
        )
        .unwrap();
        assert_eq!(config.mcp_servers.len(), 1);
        assert_eq!(
            config.codemode.limits.limits().timeout,
            Duration::from_millis(500)
        );
    }
    #[test]
    fn other_clients_dialects_map_to_what_they_mean_here() {
        let dir = std::env::temp_dir().join(format!("dialects-{}", std::process::id()));
        let vscode = dir.join(".vscode");
        std::fs::create_dir_all(&vscode).unwrap();
        std::fs::write(
            dir.join("toy.env"),
            "\u{feff}# comment\nexport A=\"1\"\nB='two' \nC=3 # three\nD: four\n",
        )
        .unwrap();
        let config = Config::parse_in(
            r#"{"inputs":[{"type":"promptString","id":"k"}],
                "servers":{"toy":{"type":"stdio","command":"x","envFile":"${workspaceFolder}/toy.env","env":{"C":"own"}}}}"#,
            "mcp.json",
            Some(&vscode.join("mcp.json")),
        )
        .unwrap();
        let Transport::Stdio { env, .. } = &config.upstreams[0].transport else {
            panic!("{config:?}");
        };
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "two");
        assert_eq!(env["C"], "own", "env wins over envFile");
        assert_eq!(env["D"], "four");
        assert_eq!(env["B"], "two");
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);

        let err = Config::parse(
            r#"{"servers":{"gh":{"command":"x","env":{"T":"${input:token}"}}}}"#,
            "mcp.json",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("servers.gh.env.T") && err.contains("${NAME}"),
            "{err}"
        );

        let windsurf =
            Config::parse(r#"{"mcpServers":{"r":{"serverUrl":"http://h/mcp"}}}"#, "c").unwrap();
        assert_eq!(windsurf.upstreams[0].transport.name(), "http");

        let cline = Config::parse(
            r#"{"mcpServers":{"t":{"command":"x","timeout":2.5,"autoApprove":["a*b"],"alwaysAllow":["c"],"transportType":"stdio"}},
                "codemode":{"policy":{"rules":[{"tools":"t.c","action":"deny"}]}}}"#,
            "c",
        )
        .unwrap();
        assert_eq!(cline.upstreams[0].call_timeout_ms, Some(2500));
        assert_eq!(
            rules(&cline),
            [
                ("t.c", PolicyAction::Deny),
                ("t.a[*]b", PolicyAction::Allow),
                ("t.c", PolicyAction::Allow)
            ],
            "the config's own deny comes first"
        );
        let denied = Config::parse(
            r#"{"mcpServers":{"t":{"command":"x","autoApprove":["a"]}},"codemode":{"policy":{"default":"deny"}}}"#,
            "c",
        )
        .unwrap();
        assert!(denied.codemode.policy.rules.is_empty());
        assert!(
            denied.warnings[0].contains("not applied"),
            "{:?}",
            denied.warnings
        );

        let starred = Config::parse(
            r#"{"mcpServers":{"t*":{"command":"x","autoApprove":["text"]}}}"#,
            "c",
        )
        .unwrap();
        assert_eq!(
            starred.codemode.policy.rules[0].tools, "t[*].text",
            "a server's name matches itself only"
        );
        let windsurf = Config::parse(
            r#"{"mcpServers":{"w":{"command":"x","disabledTools":["crash"]}},"codemode":{"policy":{"rules":[{"tools":"*","action":"allow"}]}}}"#,
            "c",
        )
        .unwrap();
        assert_eq!(
            rules(&windsurf),
            [("w.crash", PolicyAction::Deny), ("*", PolicyAction::Allow)]
        );
        let sandboxed = Config::parse(
            r#"{"servers":{"v":{"command":"x","sandboxEnabled":true}}}"#,
            "c",
        )
        .unwrap();
        assert!(sandboxed.upstreams.is_empty() && sandboxed.warnings[0].contains("not started"));

        let err =
            Config::parse(r#"{"mcpServers":{"t":{"command":"x","timeout":0}}}"#, "c").unwrap_err();
        assert!(err.to_string().contains("mcpServers.t.timeout"), "{err}");
        let err = Config::parse(r#"{"codemode":{"nope":1}}"#, "c").unwrap_err();
        assert!(
            err.to_string().contains("nope"),
            "codemode's own keys stay strict: {err}"
        );
    }
    #[test]
    fn a_json_syntax_error_names_line_and_column() {
        let err = Config::parse(
            "{\n  \"mcpServers\": {\n    \"time\": { \"command\": \"uvx\" \"args\": [] }\n  }\n}",
            "c.json",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "c.json: line 3, column 32: not valid JSON: expected `,` or `}`"
        );
    }
}
