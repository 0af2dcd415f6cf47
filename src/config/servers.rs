//! `mcpServers`: upstream MCP servers as Claude Desktop, VS Code, Cursor and other clients
//! write them, resolved into the transports `upstream` connects with.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::ConfigError;

/// One entry of `mcpServers`, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerEntry {
    /// Program to start (stdio servers).
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its own environment variables. Nothing else of ours reaches it but a minimal
    /// environment (`PATH`, `HOME`, the locale, ...) and the names in `inherit_env`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// More of our environment's variables to pass through, by name (`codemode.inheritEnv`
    /// adds to it for every server).
    #[serde(default)]
    pub inherit_env: Vec<String>,
    /// Its working directory.
    pub cwd: Option<String>,
    /// Endpoint of a remote server.
    pub url: Option<String>,
    /// HTTP headers sent to a remote server (credentials stay in the host).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `stdio`, `http` / `streamable-http`, or `sse` (VS Code and others write `type`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Same as `type` (some clients write `transport`).
    pub transport: Option<String>,
    /// Set to skip this server without removing it.
    #[serde(default)]
    pub disabled: bool,
    /// A dotenv file of more variables for it, relative to the config file (VS Code,
    /// Cursor); `env` wins over it.
    pub env_file: Option<String>,
    /// How long one tool call may take: seconds (Cline) or, above 3600, milliseconds
    /// (Claude Code); this server's call timeout.
    pub timeout: Option<f64>,
    /// Cline: tools called without asking; allow rules after `codemode.policy`'s own.
    #[serde(default)]
    pub auto_approve: Vec<String>,
    /// Cline's older name for `autoApprove`.
    #[serde(default)]
    pub always_allow: Vec<String>,
    /// Windsurf's name for `url`.
    pub server_url: Option<String>,
    /// Windsurf: tools switched off; deny rules before `codemode.policy`'s own.
    #[serde(default)]
    pub disabled_tools: Vec<String>,
    /// VS Code: run the server in its sandbox, which codemode-mcp has not; such a server is
    /// not started.
    pub sandbox_enabled: Option<bool>,
    /// Cline's older name for `type`.
    pub transport_type: Option<String>,
    /// Keys of other clients' dialects with no meaning here; each is warned about.
    #[serde(flatten)]
    pub ignored: BTreeMap<String, serde_json::Value>,
}

/// Where an entry is resolved: for its key paths, `${...}` and relative files.
pub struct Context<'a> {
    /// The config file, or `config` for a value given in code.
    pub origin: &'a str,
    /// `mcpServers`, or `servers` (VS Code).
    pub section: &'a str,
    /// The config file's directory: `envFile` and `${workspaceFolder}` are relative to it.
    pub base_dir: Option<&'a Path>,
    /// The environment `${VAR}` reads.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("origin", &self.origin)
            .field("section", &self.section)
            .finish_non_exhaustive()
    }
}

impl Context<'_> {
    /// The workspace a `.vscode/` or `.cursor/` config belongs to, else the file's directory.
    fn workspace(&self) -> Option<PathBuf> {
        let dir = self.base_dir?;
        match dir.file_name().and_then(|n| n.to_str()) {
            Some(".vscode" | ".cursor") => dir.parent().map(Path::to_path_buf),
            _ => Some(dir.to_path_buf()),
        }
    }

    /// `${NAME}`'s value: the environment, or a variable the editors define.
    fn var(&self, name: &str) -> Option<String> {
        match name {
            "userHome" => (self.env)("HOME"),
            "workspaceFolder" => self.workspace().map(|w| w.display().to_string()),
            "workspaceFolderBasename" => self
                .workspace()
                .and_then(|w| w.file_name().map(|n| n.to_string_lossy().into_owned())),
            "pathSeparator" | "/" => Some(std::path::MAIN_SEPARATOR.to_string()),
            _ => (self.env)(name),
        }
    }
}

/// How to reach an upstream, with `${VAR}` already expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A child process speaking MCP on stdin/stdout.
    Stdio {
        /// Program.
        command: String,
        /// Arguments.
        args: Vec<String>,
        /// Its own variables.
        env: BTreeMap<String, String>,
        /// Working directory.
        cwd: Option<PathBuf>,
        /// Our variables it gets besides the minimal environment, by name (this entry's
        /// `inheritEnv` and `codemode.inheritEnv`).
        inherit_env: Vec<String>,
    },
    /// Streamable HTTP.
    Http {
        /// Endpoint.
        url: String,
        /// Headers sent with every request.
        headers: BTreeMap<String, String>,
    },
    /// Legacy HTTP+SSE (protocol 2024-11-05).
    Sse {
        /// The SSE endpoint (`GET`).
        url: String,
        /// Headers sent with every request.
        headers: BTreeMap<String, String>,
    },
}

impl Transport {
    /// `stdio`, `http` or `sse`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Stdio { .. } => "stdio",
            Self::Http { .. } => "http",
            Self::Sse { .. } => "sse",
        }
    }
}

/// A configured upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Its key in `mcpServers`; also its namespace in programs.
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// Its own call timeout (Cline's `timeout`), over `codemode.upstream.callTimeoutMs`.
    pub call_timeout_ms: Option<u64>,
    /// Its tools its entry lets be called without asking (Cline's `autoApprove`).
    pub auto_approve: Vec<String>,
    /// Its tools its entry switched off (Windsurf's `disabledTools`).
    pub disabled_tools: Vec<String>,
}

impl ServerEntry {
    /// Resolves the entry named `name`; what it has that means nothing here is added to
    /// `warnings`.
    pub fn resolve(
        &self,
        name: &str,
        cx: &Context<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<UpstreamConfig, ConfigError> {
        let section = cx.section;
        let origin = cx.origin;
        let at = |key: &str| format!("{section}.{name}{key}");
        let invalid = |path: String, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            path,
            message,
        };
        let lookup = |var: &str| cx.var(var);
        let expand = |path: String, value: &str| {
            expand_vars(value, &lookup).map_err(|message| invalid(path, message))
        };
        for key in self.ignored.keys() {
            warnings.push(format!(
                "{origin}: {}: ignored (it means nothing to codemode-mcp)",
                at(&format!(".{key}"))
            ));
        }
        let transport_key = match (&self.transport, &self.transport_type) {
            (Some(a), Some(b)) if a != b => {
                return Err(invalid(
                    at(".transportType"),
                    format!("\"{b}\" contradicts \"transport\": \"{a}\"; give one of them"),
                ));
            }
            (Some(kind), _) => Some(kind),
            (None, kind) => kind.as_ref(),
        };
        let url = match (&self.url, &self.server_url) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    at(".serverUrl"),
                    "is Windsurf's name for \"url\", which is given too; give one of them".into(),
                ));
            }
            (Some(url), None) | (None, Some(url)) => Some(url),
            (None, None) => None,
        };
        let kind = match (&self.kind, transport_key) {
            (Some(a), Some(b)) if a != b => {
                return Err(invalid(
                    at(".transport"),
                    format!("\"{b}\" contradicts \"type\": \"{a}\"; give one of them"),
                ));
            }
            (Some(kind), _) => Some((kind.as_str(), ".type")),
            (None, Some(kind)) => Some((kind.as_str(), ".transport")),
            (None, None) => None,
        };
        let kind = match kind {
            None => None,
            Some(("stdio", _)) => Some("stdio"),
            Some(("http" | "streamable-http" | "streamableHttp" | "streamable_http", _)) => {
                Some("http")
            }
            Some(("sse", _)) => Some("sse"),
            Some((other, key)) => {
                return Err(invalid(
                    at(key),
                    format!(
                        "unknown transport \"{other}\": allowed \"stdio\", \"http\" (or \"streamable-http\"), \"sse\""
                    ),
                ));
            }
        };
        let transport = match (&self.command, url, kind) {
            (Some(_), Some(_), _) => {
                return Err(invalid(
                    at(""),
                    "has both \"command\" and \"url\": a server is either started (command) or reached (url)".into(),
                ));
            }
            (Some(command), None, None | Some("stdio")) => {
                let args = self
                    .args
                    .iter()
                    .enumerate()
                    .map(|(i, a)| expand(at(&format!(".args[{i}]")), a))
                    .collect::<Result<_, _>>()?;
                let mut env = match &self.env_file {
                    Some(file) => {
                        let file = expand(at(".envFile"), file)?;
                        let path = cx
                            .base_dir
                            .map_or_else(|| PathBuf::from(&file), |d| d.join(&file));
                        read_env_file(&path).map_err(|m| invalid(at(".envFile"), m))?
                    }
                    None => BTreeMap::new(),
                };
                for (k, v) in &self.env {
                    env.insert(k.clone(), expand(at(&format!(".env.{k}")), v)?);
                }
                let cwd = match &self.cwd {
                    Some(cwd) => Some(PathBuf::from(expand(at(".cwd"), cwd)?)),
                    None => None,
                };
                for (i, name) in self.inherit_env.iter().enumerate() {
                    check_inherited_name(name)
                        .map_err(|m| invalid(at(&format!(".inheritEnv[{i}]")), m))?;
                }
                Transport::Stdio {
                    command: expand(at(".command"), command)?,
                    args,
                    env,
                    cwd,
                    inherit_env: self.inherit_env.clone(),
                }
            }
            (None, Some(url), None | Some("http") | Some("sse")) => {
                let url_key = if self.url.is_some() {
                    ".url"
                } else {
                    ".serverUrl"
                };
                let url = expand(at(url_key), url)?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid(
                        at(url_key),
                        format!("\"{url}\" is not an http:// or https:// URL"),
                    ));
                }
                let headers = self
                    .headers
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), expand(at(&format!(".headers.{k}")), v)?)))
                    .collect::<Result<_, ConfigError>>()?;
                // Without an explicit type, an endpoint ending in /sse is the legacy transport,
                // as other clients guess.
                if kind == Some("sse")
                    || (kind.is_none() && url.trim_end_matches('/').ends_with("/sse"))
                {
                    Transport::Sse { url, headers }
                } else {
                    Transport::Http { url, headers }
                }
            }
            (Some(_), None, Some(kind)) => {
                return Err(invalid(
                    at(""),
                    format!("transport \"{kind}\" needs \"url\", not \"command\""),
                ));
            }
            (None, Some(_), Some(_)) => {
                return Err(invalid(
                    at(""),
                    "transport \"stdio\" needs \"command\", not \"url\"".into(),
                ));
            }
            (None, None, _) => {
                return Err(invalid(
                    at(""),
                    "needs \"command\" (a server to start, with optional \"args\", \"env\", \"cwd\") or \"url\" (a remote server, with optional \"headers\")".into(),
                ));
            }
        };
        if self.command.is_none()
            && (!self.args.is_empty()
                || !self.env.is_empty()
                || !self.inherit_env.is_empty()
                || self.env_file.is_some())
        {
            return Err(invalid(
                at(""),
                "\"args\", \"env\", \"envFile\" and \"inheritEnv\" apply only to servers started with \"command\"".into(),
            ));
        }
        if url.is_none() && !self.headers.is_empty() {
            return Err(invalid(
                at(".headers"),
                "\"headers\" apply only to remote servers (\"url\")".into(),
            ));
        }
        // Cline writes seconds (1 to 3600), Claude Code milliseconds (it ignores values
        // under 1000): past an hour it can only be milliseconds.
        let call_timeout_ms = match self.timeout {
            None => None,
            Some(t) if t.is_finite() && (1.0..=3600.0).contains(&t) => {
                if t >= 1000.0 {
                    warnings.push(format!(
                        "{origin}: {}: {t} read as seconds (Cline's unit); if it is Claude Code's milliseconds, write {}",
                        at(".timeout"),
                        (t / 1000.0).max(1.0).round()
                    ));
                }
                Some((t * 1000.0).round() as u64)
            }
            Some(t) if t.is_finite() && t > 3600.0 && t <= 86_400_000.0 => Some(t.round() as u64),
            Some(t) => {
                return Err(invalid(
                    at(".timeout"),
                    format!(
                        "{t} is out of range: seconds from 1 to 3600 (Cline), or milliseconds above 3600 up to a day (Claude Code)"
                    ),
                ));
            }
        };
        let mut auto_approve = self.auto_approve.clone();
        auto_approve.extend(self.always_allow.iter().cloned());
        auto_approve.sort();
        auto_approve.dedup();
        Ok(UpstreamConfig {
            name: name.to_string(),
            transport,
            call_timeout_ms,
            auto_approve,
            disabled_tools: self.disabled_tools.clone(),
        })
    }
}

/// Reads a dotenv file: `NAME=value` (or `NAME: value`) lines, `#` comments, an optional `export `, values
/// optionally quoted.
fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut vars = BTreeMap::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        // VS Code also takes `NAME: value`.
        let split = match (line.find('='), line.find(':')) {
            (Some(eq), Some(colon)) if colon < eq => line.split_once(':'),
            (Some(_), _) => line.split_once('='),
            (None, Some(_)) => line.split_once(':'),
            (None, None) => None,
        };
        let Some((name, value)) = split else {
            return Err(format!(
                "{}:{}: expected NAME=value, found {line:?}",
                path.display(),
                number + 1
            ));
        };
        let value = value.trim();
        let quoted = [('"', '"'), ('\'', '\'')].iter().find_map(|(open, close)| {
            value
                .strip_prefix(*open)
                .and_then(|v| v.strip_suffix(*close))
        });
        // An unquoted value ends where a comment starts.
        let value = quoted.unwrap_or_else(|| {
            value
                .find(" #")
                .or_else(|| value.find("\t#"))
                .map_or(value, |at| value[..at].trim_end())
        });
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err(format!(
                "{}:{}: {name:?} is not a variable name",
                path.display(),
                number + 1
            ));
        }
        vars.insert(name.to_string(), value.to_string());
    }
    Ok(vars)
}

/// Checks a name of `inheritEnv`: a variable name, and not one of ours.
pub(super) fn check_inherited_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(format!("\"{name}\" is not an environment variable name"));
    }
    if name.starts_with("CODEMODE_") {
        return Err(format!(
            "\"{name}\": codemode-mcp's own variables never pass to upstreams; if this server needs the value, give it in its \"env\": {{\"{name}\": \"${{{name}}}\"}}"
        ));
    }
    Ok(())
}

/// Expands `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`.
pub fn expand_vars(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body.find('}') else {
            return Err(format!("unclosed \"${{\" in \"{value}\": write ${{NAME}}"));
        };
        let expr = &body[..end];
        if let Some(id) = expr.strip_prefix("input:") {
            return Err(format!(
                "\"${{input:{id}}}\" is a VS Code prompt, which codemode-mcp cannot show: put the value in an environment variable and write ${{NAME}} (or ${{env:NAME}})"
            ));
        }
        // VS Code, Cursor and Windsurf write `${env:NAME}`.
        let expr = expr.strip_prefix("env:").unwrap_or(expr);
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        if name.is_empty()
            || !(name == "/" || name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(format!("\"${{{expr}}}\" is not a variable name"));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "${{{name}}} is not set in the environment (set it, or write ${{{name}:-default}})"
                ));
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "t0k".to_string())
    }

    fn entry(json: &str) -> ServerEntry {
        serde_json::from_str(json).unwrap()
    }

    fn cx() -> Context<'static> {
        Context {
            origin: "c",
            section: "mcpServers",
            base_dir: None,
            env: &env,
        }
    }

    trait Resolve {
        fn resolve_in(&self, name: &str) -> Result<UpstreamConfig, ConfigError>;
    }

    impl Resolve for ServerEntry {
        fn resolve_in(&self, name: &str) -> Result<UpstreamConfig, ConfigError> {
            self.resolve(name, &cx(), &mut Vec::new())
        }
    }

    #[test]
    fn vars_expand_with_defaults_and_missing_ones_are_named() {
        assert_eq!(
            expand_vars("a ${TOKEN} $$ ${X:-d}", &env).unwrap(),
            "a t0k $ d"
        );
        let err = expand_vars("${NOPE}", &env).unwrap_err();
        assert!(err.contains("${NOPE} is not set"), "{err}");
    }

    #[test]
    fn stdio_http_and_sse_entries_resolve() {
        let stdio = entry(r#"{"command":"npx","args":["-y","${TOKEN}"],"env":{"K":"${TOKEN}"}}"#)
            .resolve_in("fs")
            .unwrap();
        assert_eq!(
            stdio.transport,
            Transport::Stdio {
                command: "npx".into(),
                args: vec!["-y".into(), "t0k".into()],
                env: [("K".to_string(), "t0k".to_string())].into(),
                cwd: None,
                inherit_env: Vec::new(),
            }
        );
        let http = entry(r#"{"url":"http://h/mcp","headers":{"Authorization":"Bearer ${TOKEN}"}}"#)
            .resolve_in("r")
            .unwrap();
        assert_eq!(http.transport.name(), "http");
        let sse = entry(r#"{"type":"sse","url":"http://h/events"}"#)
            .resolve_in("s")
            .unwrap();
        assert_eq!(sse.transport.name(), "sse");
        let guessed = entry(r#"{"url":"http://h/sse"}"#).resolve_in("s").unwrap();
        assert_eq!(guessed.transport.name(), "sse");
    }

    #[test]
    fn mistakes_name_the_key_path() {
        let err = entry(r#"{"args":["x"]}"#).resolve_in("gh").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c: mcpServers.gh: needs \"command\""),
            "{err}"
        );
        let err = entry(r#"{"command":"x","args":["${MISSING}"]}"#)
            .resolve_in("gh")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("mcpServers.gh.args[0]: ${MISSING} is not set"),
            "{err}"
        );
        let err = entry(r#"{"url":"http://h","type":"websocket"}"#)
            .resolve_in("gh")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("mcpServers.gh.type: unknown transport"),
            "{err}"
        );
    }
}
