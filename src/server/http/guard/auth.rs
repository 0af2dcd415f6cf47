//! Bearer authentication: every request but the probe carries one of the tokens, whose
//! principal goes into the request's extensions; the console and the metrics are the
//! operator's (the first token's) alone.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use http::{Method, StatusCode, header};

use super::{Guard, Refusal};
use crate::server::http::{
    HEALTH_PATH, METRICS_PATH,
    console::{self, CONSOLE_PATH, LOGIN_PATH},
};

/// The layer: without `--auth-token` every request passes, anonymous; with it, a request
/// passes with its principal, or is refused.
pub(in crate::server::http) async fn check(
    State(guard): State<Arc<Guard>>,
    mut request: Request,
    next: Next,
) -> Result<Response, Refusal> {
    let path = request.uri().path();
    let Some(tokens) = guard.token.as_ref().filter(|_| path != HEALTH_PATH) else {
        return Ok(next.run(request).await);
    };
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
        None if console => return Err(Refusal::Answer(console::login_page(false))),
        Some(given) if operators_only && tokens.admits(given) && !tokens.is_operator(given) => {
            return Err(Refusal::said(
                StatusCode::FORBIDDEN,
                "this token may not open the console or the metrics, which show every client's executions: only the operator's (the first in the token file) does",
            ));
        }
        Some(given) if tokens.admits(given) => {
            let principal = crate::server::Principal::of_token(given);
            request.extensions_mut().insert(principal);
        }
        // RFC 6750: no error attribute when credentials are missing; nothing else is
        // said either way.
        Some(_) => {
            return Err(Refusal::Unauthenticated {
                challenge: "Bearer realm=\"codemode-mcp\", error=\"invalid_token\"",
            });
        }
        None => {
            return Err(Refusal::Unauthenticated {
                challenge: "Bearer realm=\"codemode-mcp\"",
            });
        }
    }
    Ok(next.run(request).await)
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
