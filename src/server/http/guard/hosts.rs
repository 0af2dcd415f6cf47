//! The Host and Origin checks (DNS-rebinding protection): a browser page on another site,
//! or a name that resolves to this machine, must not reach the server.

use std::{net::IpAddr, sync::Arc};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use http::{StatusCode, header, uri::Authority};

use super::{Guard, Refusal};
use crate::server::http::{HEALTH_PATH, HttpError};

/// The layer: a request whose `Host` is not this server's, or whose `Origin` is a page
/// the server does not serve, goes no further. Probes pass the Host check only.
pub(in crate::server::http) async fn check(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Result<Response, Refusal> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(Authority::as_str));
    match host {
        Some(host) if guard.hosts.admits(host) => {}
        Some(host) => {
            return Err(Refusal::said(
                StatusCode::FORBIDDEN,
                format!(
                    "Host {host:?} is not allowed (DNS-rebinding protection); this server answers to: {}. Start it with --allowed-host NAME to add a name clients use",
                    guard.hosts.describe()
                ),
            ));
        }
        None => {
            return Err(Refusal::said(
                StatusCode::BAD_REQUEST,
                "the request has no Host header; HTTP/1.1 requires one",
            ));
        }
    }
    if request.uri().path() != HEALTH_PATH
        && let Some(origin) = request.headers().get(header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or("");
        if !guard.origins.admits(origin) {
            return Err(Refusal::said(
                StatusCode::FORBIDDEN,
                format!(
                    "Origin {origin:?} is not allowed: browser pages may call this server only from loopback origins or those given with --allowed-origin"
                ),
            ));
        }
    }
    Ok(next.run(request).await)
}

/// Host names every server answers to: loopback ones.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Which `Host` headers are accepted.
#[derive(Debug, Clone)]
pub(in crate::server::http) struct HostPolicy {
    /// `None`: any host (`--allowed-host '*'`).
    allowed: Option<Vec<String>>,
}

impl HostPolicy {
    /// Loopback names, the bound address when it is a specific one, and `extra` (names or
    /// `name:port`); `*` among them accepts every host.
    pub(in crate::server::http) fn new(bound: IpAddr, extra: &[String]) -> Self {
        if extra.iter().any(|h| h == "*") {
            return Self { allowed: None };
        }
        let mut allowed: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
        if !bound.is_unspecified() && !bound.is_loopback() {
            allowed.push(bound.to_string());
        }
        allowed.extend(extra.iter().map(|h| normalize_host(h)));
        Self {
            allowed: Some(allowed),
        }
    }

    fn admits(&self, host: &str) -> bool {
        let Some(allowed) = &self.allowed else {
            return true;
        };
        let Some((name, port)) = strict_authority(host) else {
            return false;
        };
        let with_port = port.map(|port| format!("{name}:{port}"));
        allowed
            .iter()
            .any(|a| *a == name || with_port.as_deref() == Some(a.as_str()))
    }

    /// What the refusal says is allowed.
    fn describe(&self) -> String {
        self.allowed
            .as_ref()
            .map_or_else(|| "any".to_string(), |a| a.join(", "))
    }
}

/// `host[:port]` of a `Host` header or an `Origin`, read strictly: no userinfo and a port
/// that is a number, so that neither `user@127.0.0.1` nor `127.0.0.1:80.evil.example` (a
/// name under `evil.example`) passes for loopback.
fn strict_authority(text: &str) -> Option<(String, Option<u16>)> {
    let port_of = |digits: &str| -> Option<u16> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            inside.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                after => Some(port_of(after.strip_prefix(':')?)?),
            };
            (inside, port)
        }
        None => match text.split_once(':') {
            None => (text, None),
            Some((host, port)) => (host, Some(port_of(port)?)),
        },
    };
    let name_like = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':');
    if host.is_empty() || !host.chars().all(name_like) {
        return None;
    }
    Some((normalize_host(host), port))
}

/// `[::1]` and `::1` are one host; names are case-insensitive.
fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// Which browser `Origin` headers are accepted. A request without one (any non-browser
/// client) passes; a browser page must come from loopback or a listed origin.
#[derive(Debug, Clone)]
pub(in crate::server::http) struct OriginPolicy {
    any: bool,
    /// `scheme://host:port`, the port `*` for any.
    allowed: Vec<(String, String, String)>,
}

impl OriginPolicy {
    /// `extra` holds origins such as `https://app.example.com`, `http://host:8080`,
    /// `https://host:*`, `null`, or `*` for every origin.
    pub(in crate::server::http) fn new(extra: &[String]) -> Result<Self, HttpError> {
        let mut allowed = Vec::new();
        for scheme in ["http", "https"] {
            for host in LOOPBACK_HOSTS {
                allowed.push((scheme.to_string(), host.to_string(), "*".to_string()));
            }
        }
        let mut any = false;
        for origin in extra {
            match origin.as_str() {
                "*" => any = true,
                "null" => allowed.push(("null".into(), String::new(), String::new())),
                _ => allowed.push(parse_origin(origin, true).ok_or_else(|| {
                    HttpError::AllowedOrigin {
                        origin: origin.clone(),
                    }
                })?),
            }
        }
        Ok(Self { any, allowed })
    }

    fn admits(&self, origin: &str) -> bool {
        if self.any {
            return true;
        }
        let Some((scheme, host, port)) = (if origin == "null" {
            Some(("null".into(), String::new(), String::new()))
        } else {
            parse_origin(origin, false)
        }) else {
            return false;
        };
        self.allowed
            .iter()
            .any(|(s, h, p)| *s == scheme && *h == host && (p == "*" || *p == port))
    }
}

/// `scheme://host[:port]` with the scheme's default port filled in; `:*` only where
/// `wildcard` (allow-list entries).
fn parse_origin(origin: &str, wildcard: bool) -> Option<(String, String, String)> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains('/') {
        return None;
    }
    if wildcard && let Some(host) = rest.strip_suffix(":*") {
        return Some((scheme, normalize_host(host), "*".to_string()));
    }
    let (host, port) = strict_authority(rest)?;
    let port = match (port, scheme.as_str()) {
        (Some(port), _) => port.to_string(),
        (None, "http") => "80".to_string(),
        (None, "https") => "443".to_string(),
        (None, _) => String::new(),
    };
    Some((scheme, host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_scheme_host_and_port_exactly() {
        let origins = OriginPolicy::new(&["https://app.example.com".to_string()]).unwrap();
        for admitted in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:3000",
            "https://app.example.com",
            "https://app.example.com:443",
        ] {
            assert!(origins.admits(admitted), "{admitted}");
        }
        for refused in [
            "http://127.0.0.1:8080.evil.example",
            "http://localhost.evil.example",
            "http://user@127.0.0.1:8080",
            "http://127.0.0.1@evil.example",
            "https://app.example.com.evil.example",
            "http://app.example.com",
            "https://app.example.com:8443",
            "null",
        ] {
            assert!(!origins.admits(refused), "{refused}");
        }
    }

    #[test]
    fn hosts_with_userinfo_or_a_bad_port_are_refused() {
        let hosts = HostPolicy::new(IpAddr::from([127, 0, 0, 1]), &[]);
        for admitted in ["127.0.0.1", "127.0.0.1:8080", "localhost:1", "[::1]:80"] {
            assert!(hosts.admits(admitted), "{admitted}");
        }
        for refused in [
            "user@127.0.0.1",
            "user:pass@localhost:8080",
            "127.0.0.1:8080.evil.example",
            "127.0.0.1:99999",
            "evil.example",
        ] {
            assert!(!hosts.admits(refused), "{refused}");
        }
    }
}
