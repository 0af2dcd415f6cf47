//! What every HTTP request passes before it reaches a transport: the `Host` and `Origin`
//! checks (DNS-rebinding protection), bearer authentication, the session cap, refusal
//! while draining, and the count of requests still being answered.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use http::{HeaderValue, Method, StatusCode, header, uri::Authority};
use tokio::sync::watch;

use super::{
    HEALTH_PATH, HttpError, METRICS_PATH, SSE_PATH, STREAMABLE_PATH,
    console::{self, CONSOLE_PATH, ConsoleSessions, LOGIN_PATH},
};

/// Host names every server answers to: loopback ones.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Which `Host` headers are accepted.
#[derive(Debug, Clone)]
pub(super) struct HostPolicy {
    /// `None`: any host (`--allowed-host '*'`).
    allowed: Option<Vec<String>>,
}

impl HostPolicy {
    /// Loopback names, the bound address when it is a specific one, and `extra` (names or
    /// `name:port`); `*` among them accepts every host.
    pub(super) fn new(bound: IpAddr, extra: &[String]) -> Self {
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
pub(super) struct OriginPolicy {
    any: bool,
    /// `scheme://host:port`, the port `*` for any.
    allowed: Vec<(String, String, String)>,
}

impl OriginPolicy {
    /// `extra` holds origins such as `https://app.example.com`, `http://host:8080`,
    /// `https://host:*`, `null`, or `*` for every origin.
    pub(super) fn new(extra: &[String]) -> Result<Self, HttpError> {
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

/// Requests being answered now (POSTs until their response body is done, legacy-SSE
/// requests until their response is sent): shutdown waits for it to reach zero.
#[derive(Debug, Clone)]
pub(super) struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    pub(super) fn new() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }

    pub(super) fn enter(&self) -> InFlightGuard {
        self.0.send_modify(|n| *n += 1);
        InFlightGuard(self.clone())
    }

    /// Resolves when nothing is in flight.
    pub(super) async fn idle(&self) {
        let mut watch = self.0.subscribe();
        let _ = watch.wait_for(|n| *n == 0).await;
    }

    pub(super) fn count(&self) -> usize {
        *self.0.borrow()
    }
}

/// One request in flight; dropping it ends it.
#[derive(Debug)]
pub(super) struct InFlightGuard(InFlight);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Counts the sessions open now, for the session cap.
pub(super) type SessionCount =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, usize> + Send + Sync>;

/// The shared state of the guard layer.
pub(super) struct Guard {
    pub(super) token: Option<super::tokens::Tokens>,
    pub(super) hosts: HostPolicy,
    pub(super) origins: OriginPolicy,
    pub(super) draining: AtomicBool,
    pub(super) in_flight: InFlight,
    pub(super) max_sessions: usize,
    pub(super) sessions: SessionCount,
    pub(super) max_body_bytes: usize,
    /// Browsers that signed in to the console with the token.
    pub(super) console_sessions: Arc<ConsoleSessions>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field(
                "tokens",
                &self.token.as_ref().map(super::tokens::Tokens::len),
            )
            .field("hosts", &self.hosts)
            .field("origins", &self.origins)
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

pub(super) async fn check(
    State(guard): State<Arc<Guard>>,
    mut request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(Authority::as_str));
    match host {
        Some(host) if guard.hosts.admits(host) => {}
        Some(host) => {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "Host {host:?} is not allowed (DNS-rebinding protection); this server answers to: {}. Start it with --allowed-host NAME to add a name clients use",
                    guard.hosts.describe()
                ),
            );
        }
        None => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "the request has no Host header; HTTP/1.1 requires one".into(),
            );
        }
    }
    if request.uri().path() == HEALTH_PATH {
        return next.run(request).await;
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !guard.origins.admits(origin) {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "Origin {origin:?} is not allowed: browser pages may call this server only from loopback origins or those given with --allowed-origin"
                ),
            );
        }
    }
    if let Some(tokens) = &guard.token {
        let path = request.uri().path();
        let console = path == CONSOLE_PATH || path.starts_with("/console/");
        // What shows every principal's executions is the operator's alone.
        let operators_only = console || path == METRICS_PATH;
        // The console's login form checks the token itself; a browser signed in to the
        // console carries its session cookie instead of a bearer header.
        let console_admits = console
            && ((path == LOGIN_PATH && request.method() == Method::POST)
                || guard.console_sessions.admits(request.headers()));
        match bearer(&request) {
            _ if console_admits => {}
            None if console => return console::login_page(false),
            Some(given) if operators_only && tokens.admits(given) && !tokens.is_operator(given) => {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "this token may not open the console or the metrics, which show every client's executions: only the operator's (the first in the token file) does".into(),
                );
            }
            Some(given) if tokens.admits(given) => {
                let principal = crate::server::Principal::of_token(given);
                request.extensions_mut().insert(principal);
            }
            // RFC 6750: no error attribute when credentials are missing; nothing else is
            // said either way.
            Some(_) => {
                return unauthorized("Bearer realm=\"codemode-mcp\", error=\"invalid_token\"");
            }
            None => return unauthorized("Bearer realm=\"codemode-mcp\""),
        }
    }
    let opens_session = (request.method() == Method::POST
        && request.uri().path() == STREAMABLE_PATH
        && !request.headers().contains_key("mcp-session-id"))
        || (request.method() == Method::GET && request.uri().path() == SSE_PATH);
    if guard.draining.load(Ordering::SeqCst) && (request.method() == Method::POST || opens_session)
    {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down and takes no new requests; retry once it is back (or on another replica)".into(),
        );
    }
    if opens_session {
        let open = (guard.sessions)().await;
        if open >= guard.max_sessions {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the server holds {open} sessions, its limit (--max-sessions); end one (DELETE /mcp with its Mcp-Session-Id) or retry later"
                ),
            );
        }
    }
    if request.method() == Method::DELETE && request.uri().path() == STREAMABLE_PATH {
        let mut response = next.run(request).await;
        // The transport answers a session's end with 202; the official SDK clients expect
        // 200 (or 204) and log anything else as a failure.
        if response.status() == StatusCode::ACCEPTED {
            *response.status_mut() = StatusCode::OK;
        }
        return response;
    }
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let streamable = request.uri().path() == STREAMABLE_PATH;
    let request = if streamable {
        match parsed_body(request, guard.max_body_bytes).await {
            Ok(request) => request,
            Err(refusal) => return refusal,
        }
    } else {
        request
    };
    let in_flight = guard.in_flight.enter();
    let response = next.run(request).await;
    let response = if streamable {
        explained(response).await
    } else {
        response
    };
    // The request is in flight until its response body is sent (or dropped).
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _in_flight = &in_flight;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// Reads a JSON body whole, so that an oversized one gets 413 and one that is not JSON
/// gets a JSON-RPC parse error (400) here rather than a bare deserialisation message.
async fn parsed_body(request: Request, max_bytes: usize) -> Result<Request, Response> {
    if !is_json(request.headers()) {
        // The transport answers 415 with what it takes.
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let bytes = read_body(body, max_bytes).await?;
    if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        return Err(parse_error(&err));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Bytes of an oversized body read and dropped before the 413 goes out: a client still
/// sending when the server closes would see a reset instead of the answer.
const DRAIN_BYTES: usize = 64 << 20;

/// The whole body, or 413 past `max_bytes`.
pub(super) async fn read_body(body: Body, max_bytes: usize) -> Result<axum::body::Bytes, Response> {
    let mut chunks = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = chunks.next().await {
        let Ok(chunk) = chunk else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "the request body could not be read to its end".into(),
            ));
        };
        seen = seen.saturating_add(chunk.len());
        if seen <= max_bytes {
            bytes.extend_from_slice(&chunk);
        } else if seen > DRAIN_BYTES {
            break;
        }
    }
    if seen > max_bytes {
        return Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the limit of {max_bytes} bytes (--max-body-kib)"),
        ));
    }
    Ok(bytes.into())
}

/// The transport's refusals come as bare text; they become JSON-RPC errors saying what
/// to do.
async fn explained(response: Response) -> Response {
    let status = response.status();
    let is_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() && is_text) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if status == StatusCode::NOT_FOUND && text.contains("ession") {
        format!(
            "{text}: no session has this Mcp-Session-Id; it was ended (DELETE), closed after being unused, or the server restarted. Start a new one: POST an initialize request without Mcp-Session-Id"
        )
    } else {
        text
    };
    refuse(status, message)
}

fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn unauthorized(challenge: &'static str) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// Whether the request says its body is JSON.
pub(super) fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

/// 400 with JSON-RPC's parse error: the body is not JSON.
pub(super) fn parse_error(err: &serde_json::Error) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": -32700, "message": format!("parse error: the body is not JSON ({err})")},
    });
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A refusal as a JSON-RPC error body, which MCP clients show as is.
pub(super) fn refuse(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": -32600, "message": message},
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
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
