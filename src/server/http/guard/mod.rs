//! What every HTTP request passes before it reaches a transport, as layers in this order:
//! [`hosts`] (the Host and Origin checks: DNS-rebinding protection), [`auth`] (bearer
//! tokens and their principals, the operator's console), [`caps`] (refusal while draining,
//! the session cap) and [`body`] (a POST's body read within its limit and checked to be
//! JSON, counted in flight until its answer is sent). Each refuses with a [`Refusal`].

mod auth;
mod body;
mod caps;
mod hosts;

pub(super) use body::{is_json, read_body};
pub(super) use caps::{InFlight, InFlightGuard, SessionCount};
pub(super) use hosts::{HostPolicy, OriginPolicy};

use std::sync::{Arc, atomic::AtomicBool};

use axum::{
    Router,
    middleware::from_fn_with_state,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};

use super::console::ConsoleSessions;

/// The shared state of the guard layer.
pub(in crate::server::http) struct Guard {
    pub(in crate::server::http) identity: Option<crate::server::http::identity::Identity>,
    pub(in crate::server::http) hosts: HostPolicy,
    pub(in crate::server::http) origins: OriginPolicy,
    pub(in crate::server::http) draining: AtomicBool,
    pub(in crate::server::http) in_flight: InFlight,
    pub(in crate::server::http) max_sessions: usize,
    pub(in crate::server::http) sessions: SessionCount,
    pub(in crate::server::http) max_body_bytes: usize,
    /// Browsers that signed in to the console with the token.
    pub(in crate::server::http) console_sessions: Arc<ConsoleSessions>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("tokens", &self.identity.as_ref().map(|i| i.token_count()))
            .field("hosts", &self.hosts)
            .field("origins", &self.origins)
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

/// `router` behind every layer of the guard, the Host check outermost.
pub(super) fn layered(router: Router, guard: &Arc<Guard>) -> Router {
    router
        .layer(from_fn_with_state(guard.clone(), body::check))
        .layer(from_fn_with_state(guard.clone(), caps::check))
        .layer(from_fn_with_state(guard.clone(), auth::check))
        .layer(from_fn_with_state(guard.clone(), hosts::check))
}

/// Why a request goes no further, as its answer.
pub(super) enum Refusal {
    /// A JSON-RPC error with this status, saying what was wrong and what to do; MCP
    /// clients show it as is.
    Said { status: StatusCode, message: String },
    /// 401 (or 403 for a missing scope) with a bearer challenge (RFC 6750), and what was
    /// wrong.
    Unauthenticated {
        status: StatusCode,
        challenge: String,
        message: String,
    },
    /// 400 with JSON-RPC's parse error: the body is not JSON.
    NotJson(serde_json::Error),
    /// An answer of its own (the console's sign-in page).
    Answer(Response),
}

impl Refusal {
    pub(super) fn said(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Said {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Self::Said { status, message } => (status, -32600, message),
            Self::NotJson(err) => (
                StatusCode::BAD_REQUEST,
                -32700,
                format!("parse error: the body is not JSON ({err})"),
            ),
            Self::Unauthenticated {
                status,
                challenge,
                message,
            } => {
                let mut response = Self::said(status, message).into_response();
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
                return response;
            }
            Self::Answer(response) => return response,
        };
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": code, "message": message},
        });
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// A refusal as a JSON-RPC error body (see [`Refusal::Said`]).
pub(super) fn refuse(status: StatusCode, message: String) -> Response {
    Refusal::said(status, message).into_response()
}
