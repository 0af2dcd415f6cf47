//! `mcpServers`: upstream MCP servers as Claude Desktop, VS Code, Cursor and other clients
//! write them, resolved into the transports `upstream` connects with.

use std::{collections::BTreeMap, path::PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// One entry of `mcpServers`, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
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
}

impl ServerEntry {
    /// Resolves the entry named `name`, reading `${VAR}` from `env`.
    pub fn resolve(
        &self,
        name: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<UpstreamConfig, ConfigError> {
        let at = |key: &str| format!("mcpServers.{name}{key}");
        let invalid = |path: String, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            path,
            message,
        };
        let expand = |path: String, value: &str| {
            expand_vars(value, env).map_err(|message| invalid(path, message))
        };
        let kind = match (&self.kind, &self.transport) {
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
        let transport = match (&self.command, &self.url, kind) {
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
                let env = self
                    .env
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), expand(at(&format!(".env.{k}")), v)?)))
                    .collect::<Result<_, ConfigError>>()?;
                let cwd = match &self.cwd {
                    Some(cwd) => Some(PathBuf::from(expand(at(".cwd"), cwd)?)),
                    None => None,
                };
                for (i, name) in self.inherit_env.iter().enumerate() {
                    check_inherited_name(name).map_err(|m| invalid(at(&format!(".inheritEnv[{i}]")), m))?;
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
                let url = expand(at(".url"), url)?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid(
                        at(".url"),
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
            && (!self.args.is_empty() || !self.env.is_empty() || !self.inherit_env.is_empty())
        {
            return Err(invalid(
                at(""),
                "\"args\", \"env\" and \"inheritEnv\" apply only to servers started with \"command\"".into(),
            ));
        }
        if self.url.is_none() && !self.headers.is_empty() {
            return Err(invalid(
                at(".headers"),
                "\"headers\" apply only to remote servers (\"url\")".into(),
            ));
        }
        Ok(UpstreamConfig {
            name: name.to_string(),
            transport,
        })
    }
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
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
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
            .resolve("fs", "c", &env)
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
            .resolve("r", "c", &env)
            .unwrap();
        assert_eq!(http.transport.name(), "http");
        let sse = entry(r#"{"type":"sse","url":"http://h/events"}"#)
            .resolve("s", "c", &env)
            .unwrap();
        assert_eq!(sse.transport.name(), "sse");
        let guessed = entry(r#"{"url":"http://h/sse"}"#)
            .resolve("s", "c", &env)
            .unwrap();
        assert_eq!(guessed.transport.name(), "sse");
    }

    #[test]
    fn mistakes_name_the_key_path() {
        let err = entry(r#"{"args":["x"]}"#)
            .resolve("gh", "c", &env)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c: mcpServers.gh: needs \"command\""),
            "{err}"
        );
        let err = entry(r#"{"command":"x","args":["${MISSING}"]}"#)
            .resolve("gh", "c", &env)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("mcpServers.gh.args[0]: ${MISSING} is not set"),
            "{err}"
        );
        let err = entry(r#"{"url":"http://h","type":"websocket"}"#)
            .resolve("gh", "c", &env)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("mcpServers.gh.type: unknown transport"),
            "{err}"
        );
    }
}
