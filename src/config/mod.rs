//! The config file: Claude Desktop's `mcpServers` object as is, plus a `codemode` section
//! with this server's own settings. Unknown keys and bad values are errors that name the key
//! path, so a typo never silently disables anything.
//!
//! This module reads and checks the file; each section's settings live in a module of
//! their own (`limits` also holds `codemode.upstream`, `policy`, `egress`,
//! `oversight` for anomalies, telemetry and the audit, `runs` for skills, the type
//! check, tasks, state and learned types, `tenants` for the per-principal overlays), and `mcpServers` entries in `servers`, all
//! re-exported here.

mod egress;
mod limits;
pub mod nesting;
mod oversight;
mod policy;
mod runs;
mod servers;
mod tenants;

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

pub use egress::*;
pub use limits::*;
pub use oversight::*;
pub use policy::*;
pub use runs::*;
pub use servers::{ServerEntry, Transport, UpstreamConfig, expand_vars};
pub use tenants::*;

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
    /// The name of this process's own client (over stdio, and `codemode-mcp run`) in audit
    /// records, metrics, traces and logs; `local` unless set. HTTP clients are named by
    /// their tokens.
    #[serde(default)]
    pub principal: Option<String>,
    /// Least privilege per principal: overlays that narrow the policy, egress and limits
    /// for the principals or scopes each names.
    #[serde(default)]
    pub tenants: Vec<TenantSettings>,
    /// Quotas every principal has, over sliding windows, and where the windows are kept.
    #[serde(default)]
    pub quotas: QuotaSettings,
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

fn engine_name<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<crate::sandbox::EngineKind>, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse().map(Some).map_err(serde::de::Error::custom)
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
        for (index, tenant) in config.codemode.tenants.iter().enumerate() {
            tenant.validate(index, origin)?;
        }
        config.codemode.quotas.validate("codemode.quotas", origin)?;
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
        if let Some(name) = &config.codemode.principal
            && !crate::server::is_principal_name(name)
        {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                path: "codemode.principal".into(),
                message: format!(
                    "{name:?} is not a principal name: use 1 to 64 letters, digits, `.`, `_`, `@` or `-`"
                ),
            });
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
    use std::time::Duration;

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
