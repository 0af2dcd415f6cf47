//! A POST's body and its answer: read whole within `--max-body-kib` (413 past it), checked
//! to be JSON (a JSON-RPC parse error if not), counted in flight until its answer is sent,
//! and the transport's bare-text refusals turned into errors that say what to do.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use http::{Method, StatusCode, header};

use super::{Guard, Refusal};
use crate::server::http::is_streamable;

/// The layer.
pub(in crate::server::http) async fn check(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Result<Response, Refusal> {
    if request.method() != Method::POST {
        return Ok(next.run(request).await);
    }
    let streamable = is_streamable(request.uri().path());
    let request = if streamable {
        parsed_body(request, guard.max_body_bytes).await?
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
    Ok(Response::from_parts(parts, Body::from_stream(body)))
}

/// Reads a JSON body whole, so that an oversized one gets 413 and one that is not JSON
/// gets a JSON-RPC parse error (400) here rather than a bare deserialisation message.
async fn parsed_body(request: Request, max_bytes: usize) -> Result<Request, Refusal> {
    if !is_json(request.headers()) {
        // The transport answers 415 with what it takes.
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let bytes = read_body(body, max_bytes).await?;
    if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        return Err(Refusal::NotJson(err));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Bytes of an oversized body read and dropped before the 413 goes out: a client still
/// sending when the server closes would see a reset instead of the answer.
const DRAIN_BYTES: usize = 64 << 20;

/// The whole body, or 413 past `max_bytes`.
pub(in crate::server::http) async fn read_body(
    body: Body,
    max_bytes: usize,
) -> Result<axum::body::Bytes, Refusal> {
    let mut chunks = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = chunks.next().await {
        let Ok(chunk) = chunk else {
            return Err(Refusal::said(
                StatusCode::BAD_REQUEST,
                "the request body could not be read to its end",
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
        return Err(Refusal::said(
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
    Refusal::said(status, message).into_response()
}

/// Whether the request says its body is JSON.
pub(in crate::server::http) fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}
