//! Bearer authentication: every request but the probe and the resource metadata carries a
//! token of the token file or an access token of the issuer, whose principal goes into the
//! request's extensions; the console and the metrics are operators' alone.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use http::{Method, StatusCode, header};

use super::{Guard, Refusal};
use crate::server::{
    OPERATOR_SCOPE,
    http::{
        HEALTH_PATH, MESSAGES_PATH, METRICS_PATH, SSE_PATH,
        console::{self, CONSOLE_PATH, LOGIN_PATH},
        identity::{METADATA_PATH, Rejection},
    },
};

/// The layer: without a token file or an issuer every request passes, anonymous; with
/// them, a request passes with its principal, or is refused.
pub(in crate::server::http) async fn check(
    State(guard): State<Arc<Guard>>,
    mut request: Request,
    next: Next,
) -> Result<Response, Refusal> {
    let path = request.uri().path();
    // The probe tells nothing but the state; the resource metadata is what a client reads
    // to get its first token.
    let open = path == HEALTH_PATH || path.starts_with(METADATA_PATH);
    let Some(identity) = guard.identity.as_ref().filter(|_| !open) else {
        return Ok(next.run(request).await);
    };
    let console = path == CONSOLE_PATH || path.starts_with("/console/");
    let legacy_sse = path == SSE_PATH || path == MESSAGES_PATH;
    // What shows every principal's executions is the operator's alone.
    let operators_only = console || path == METRICS_PATH;
    // The console's login form checks the token itself; a browser signed in to the
    // console carries its session cookie instead of a bearer header.
    let console_admits = console
        && ((path == LOGIN_PATH && request.method() == Method::POST)
            || guard.console_sessions.admits(request.headers()));
    if console_admits {
        return Ok(next.run(request).await);
    }
    let refuse =
        |status: StatusCode, rejection: Rejection, message: String| Refusal::Unauthenticated {
            status,
            challenge: identity.challenge(&rejection, legacy_sse),
            message,
        };
    let Some(given) = bearer(&request) else {
        if console {
            return Err(Refusal::Answer(console::login_page(false)));
        }
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            Rejection::Missing,
            "this server needs a bearer token (Authorization: Bearer TOKEN)".into(),
        ));
    };
    let principal = match identity.principal(given).await {
        Ok(principal) => principal,
        Err(Rejection::Unavailable(why)) => {
            return Err(Refusal::said(StatusCode::SERVICE_UNAVAILABLE, why));
        }
        Err(rejection) => {
            let message = match &rejection {
                Rejection::Invalid(why) => why.clone(),
                _ => "the bearer token is not taken".into(),
            };
            return Err(refuse(StatusCode::UNAUTHORIZED, rejection, message));
        }
    };
    if operators_only && !principal.is_operator() {
        return Err(Refusal::said(
            StatusCode::FORBIDDEN,
            format!(
                "this token may not open the console or the metrics, which show every client's executions: only an operator's does (the scope {OPERATOR_SCOPE}, or the first token of the token file)"
            ),
        ));
    }
    if !operators_only && !identity.admits_to_mcp(&principal) {
        let wanted = identity
            .oauth()
            .map(|o| o.required_scopes.join(" "))
            .unwrap_or_default();
        return Err(refuse(
            StatusCode::FORBIDDEN,
            Rejection::InsufficientScope,
            format!(
                "the token lacks the scopes this server requires ({wanted}); ask the issuer for a token with them"
            ),
        ));
    }
    request.extensions_mut().insert(principal);
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
