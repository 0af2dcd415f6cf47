//! The HTTP side of the streamable HTTP transport, so that what an upstream answers passes
//! [`super::wire`] before rmcp parses it, as over stdio and legacy SSE.
//!
//! rmcp's transport drives a [`StreamableHttpClient`]; its reqwest one parses a POST's
//! JSON body inside the call that sends the POST, with nothing between the two to hook
//! into. So the POST is done here, branch for branch as rmcp 3.11's
//! `post_message_with_response_limits` does it, less rmcp's fallback for a server that
//! refuses `server/discover` (this client starts with `initialize`); re-read it against
//! rmcp's on an upgrade. A `GET` (the server's own event stream, or the resumption of a
//! POST's) and the `DELETE` of a session are rmcp's, the events of the stream admitted as
//! they pass.
//!
//! One thing differs from rmcp: an event past the cap is answered with the cap's error,
//! as over the other transports, and its stream goes on; only one far past it ends the
//! stream ([`super::wire::capped`]).

use std::{borrow::Cow, collections::HashMap, sync::Arc};

use futures::{Stream, StreamExt, TryStreamExt};
use http::{HeaderName, HeaderValue, StatusCode, header};
use rmcp::{
    model::{ClientJsonRpcMessage, JsonRpcMessage, ServerJsonRpcMessage},
    transport::{
        common::{
            client_side_sse::BoxedSseResponse,
            http_header::{
                EVENT_STREAM_MIME_TYPE, HEADER_LAST_EVENT_ID, HEADER_SESSION_ID, JSON_MIME_TYPE,
            },
        },
        streamable_http_client::{
            AuthRequiredError, HttpStatusError, InsufficientScopeError, StreamableHttpClient,
            StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
        },
    },
};
use sse_stream::{Error as SseError, Sse, SseStream};

type Error = StreamableHttpError<reqwest::Error>;

/// A reqwest client for one upstream that admits each message through [`super::wire`].
#[derive(Debug, Clone)]
pub(super) struct AdmittingClient {
    http: reqwest::Client,
    upstream: Arc<str>,
}

impl AdmittingClient {
    /// The client of `upstream`, configured as rmcp's own: no idle connections kept (a
    /// reused one stalls on delayed ACKs), only same-origin redirects that keep the body.
    pub(super) fn new(upstream: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .redirect(same_origin_redirects())
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Self {
            http,
            upstream: upstream.into(),
        })
    }

    /// `events` with each message event's data admitted, or answered with the cap's error
    /// past `max_bytes` (and left without data when that answers nothing).
    fn admitted(
        &self,
        events: impl Stream<Item = Result<Sse, SseError>> + Send + 'static,
        max_bytes: usize,
    ) -> BoxedSseResponse {
        let upstream = self.upstream.clone();
        events
            .map_ok(move |mut event| {
                // rmcp reads no other event as a message.
                let is_message =
                    matches!(event.event.as_deref(), None | Some("") | Some("message"));
                if is_message
                    && let Some(data) = &event.data
                    && let Cow::Owned(bytes) =
                        super::wire::admit_whole(&upstream, data.as_bytes(), max_bytes)
                {
                    event.data =
                        (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned());
                }
                event
            })
            .boxed()
    }
}

impl StreamableHttpClient for AdmittingClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let mut request = self.http.post(uri.as_ref()).header(
            header::ACCEPT,
            format!("{EVENT_STREAM_MIME_TYPE}, {JSON_MIME_TYPE}"),
        );
        if let Some(token) = auth_header {
            request = request.bearer_auth(token);
        }
        for (name, value) in custom_headers {
            if reserved(&name) {
                return Err(StreamableHttpError::ReservedHeaderConflict(
                    name.to_string(),
                ));
            }
            request = request.header(name, value);
        }
        let session_was_attached = session_id.is_some();
        if let Some(session_id) = session_id {
            request = request.header(HEADER_SESSION_ID, session_id.as_ref());
        }
        let response = request.json(&message).send().await?;
        let status = response.status();
        if let Some(error) = challenge(&response) {
            return Err(error);
        }
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == StatusCode::NOT_FOUND && session_was_attached {
            return Err(StreamableHttpError::SessionExpired);
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|ct| String::from_utf8_lossy(ct.as_bytes()).into_owned());
        let content_is = |expected| {
            content_type
                .as_deref()
                .is_some_and(|ct| media_type_is(ct, expected))
        };
        let session_id = response
            .headers()
            .get(HEADER_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !status.is_success() {
            return failed(response, content_is(JSON_MIME_TYPE), session_id, limits).await;
        }
        // Only a request waits for an answer; some servers answer anything else with an
        // empty 200, or a body nobody needs.
        let awaits_no_response = !matches!(message, ClientJsonRpcMessage::Request(_));
        if awaits_no_response && response.content_length() == Some(0) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if content_is(EVENT_STREAM_MIME_TYPE) {
            let max_bytes = limits.max_sse_event_size;
            let bytes = super::wire::capped(&self.upstream, response.bytes_stream(), max_bytes);
            let events = self.admitted(SseStream::from_bytes_stream(bytes), max_bytes);
            return Ok(StreamableHttpPostResponse::Sse(events, session_id));
        }
        if content_is(JSON_MIME_TYPE) {
            let body = read_bounded(response, limits.max_json_response_size).await?;
            let body = super::wire::admit(&self.upstream, &body);
            return match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
                Ok(message) => Ok(StreamableHttpPostResponse::Json(message, session_id)),
                Err(e) if awaits_no_response => {
                    tracing::warn!(
                        upstream = %self.upstream,
                        "an answer to a notification is not JSON-RPC ({e}); taken as accepted"
                    );
                    Ok(StreamableHttpPostResponse::Accepted)
                }
                Err(e) => Err(StreamableHttpError::UnexpectedServerResponse(
                    format!(
                        "could not parse JSON response as ServerJsonRpcMessage: {e}: {}",
                        preview(&body)
                    )
                    .into(),
                )),
            };
        }
        if awaits_no_response {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        Err(StreamableHttpError::UnexpectedContentType(content_type))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        self.http
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxedSseResponse, Error> {
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default().max_sse_event_size,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxedSseResponse, Error> {
        // rmcp ends the stream at the bound given it, past which an event is not read on;
        // up to there, an event past the cap is answered with the cap's error, as on a
        // POST's stream.
        let events = self
            .http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                super::wire::event_limit(max_sse_event_size),
            )
            .await?;
        Ok(self.admitted(events, max_sse_event_size))
    }
}

/// The error of a 401 or 403 that carries a `WWW-Authenticate` challenge.
fn challenge(response: &reqwest::Response) -> Option<Error> {
    let status = response.status();
    if !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return None;
    }
    let Ok(value) = response.headers().get(header::WWW_AUTHENTICATE)?.to_str() else {
        return Some(StreamableHttpError::UnexpectedServerResponse(
            "invalid www-authenticate header value".into(),
        ));
    };
    Some(if status == StatusCode::UNAUTHORIZED {
        StreamableHttpError::AuthRequired(AuthRequiredError::new(value.to_string()))
    } else {
        // The scope serves an OAuth flow, which upstreams configured with headers do not
        // run.
        StreamableHttpError::InsufficientScope(InsufficientScopeError::new(value.to_string(), None))
    })
}

/// What a POST answered with a failing status: the JSON-RPC error its JSON body holds, or
/// the status (with a 429's or 5xx's `Retry-After`) and the start of its body.
async fn failed(
    response: reqwest::Response,
    is_json: bool,
    session_id: Option<String>,
    limits: StreamableHttpResponseLimits,
) -> Result<StreamableHttpPostResponse, Error> {
    let status = response.status();
    let retry = (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()).then(|| {
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        HttpStatusError::new(status.as_u16(), retry_after)
    });
    let body = match retry {
        Some(retry) if !is_json || status == StatusCode::TOO_MANY_REQUESTS => {
            return Err(retry.into());
        }
        // An unchallenged 401 or 403 keeps its status: its body is a diagnostic.
        _ if is_json && !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
            match read_bounded(response, limits.max_json_response_size).await {
                Ok(body) => {
                    if let Ok(error @ JsonRpcMessage::Error(_)) =
                        serde_json::from_slice::<ServerJsonRpcMessage>(&body)
                    {
                        return Ok(StreamableHttpPostResponse::Json(error, session_id));
                    }
                    let end = body.len().min(limits.max_error_response_size);
                    String::from_utf8_lossy(&body[..end]).into_owned()
                }
                Err(error @ StreamableHttpError::ResponseBodyTooLarge { .. }) => {
                    return Err(retry.map(Error::from).unwrap_or(error));
                }
                Err(_) => "<failed to read response body>".to_string(),
            }
        }
        _ => read_prefix(response, limits.max_error_response_size).await,
    };
    if let Some(retry) = retry {
        return Err(retry.into());
    }
    Err(StreamableHttpError::UnexpectedServerResponse(
        format!("HTTP {status}: {body}").into(),
    ))
}

/// The whole body, failing past `max_bytes` before reading more (rmcp's error, which the
/// upstream's call reports as its answer past the cap).
async fn read_bounded(response: reqwest::Response, max_bytes: usize) -> Result<Vec<u8>, Error> {
    let too_large = StreamableHttpError::ResponseBodyTooLarge {
        max_size: max_bytes,
    };
    if response
        .content_length()
        .is_some_and(|length| length > max_bytes as u64)
    {
        return Err(too_large);
    }
    let mut chunks = response.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = chunks.try_next().await? {
        if chunk.len() > max_bytes - body.len() {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// At most the first `max_bytes` of the body, as text for a diagnostic.
async fn read_prefix(response: reqwest::Response, max_bytes: usize) -> String {
    let mut chunks = response.bytes_stream();
    let mut body = Vec::new();
    while body.len() < max_bytes {
        let Some(Ok(chunk)) = chunks.next().await else {
            break;
        };
        let room = max_bytes - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// The start of a body that did not parse, for the error.
fn preview(body: &[u8]) -> String {
    const PREVIEW_BYTES: usize = 512;
    if body.is_empty() {
        return "<empty>".to_string();
    }
    let mut text = String::from_utf8_lossy(&body[..body.len().min(PREVIEW_BYTES)]).into_owned();
    // A cut character shows as one replacement character at the end.
    if body.len() > PREVIEW_BYTES {
        text.push_str("...");
    }
    text
}

/// Whether a configured header is one the transport sets itself (`MCP-Protocol-Version`,
/// which rmcp adds to the configured ones, is not).
fn reserved(name: &HeaderName) -> bool {
    [
        header::ACCEPT.as_str(),
        HEADER_SESSION_ID,
        HEADER_LAST_EVENT_ID,
    ]
    .iter()
    .any(|reserved| name.as_str().eq_ignore_ascii_case(reserved))
}

/// Whether a `Content-Type` names `expected`, whatever its case and parameters.
fn media_type_is(value: &str, expected: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
}

/// rmcp's redirect policy: only a same-origin 307 or 308 is followed (up to ten), since
/// they keep the method and body. A 301, 302 or 303 would turn the POST into a GET without
/// its message, and another origin would be sent the session id and the configured
/// headers (credentials among them); those come back as the redirect's own answer.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    const MAX_REDIRECTS: usize = 10;
    reqwest::redirect::Policy::custom(|attempt| {
        let keeps_body = matches!(
            attempt.status(),
            StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
        );
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if !keeps_body || !same_origin {
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("exceeded {MAX_REDIRECTS} redirects"))
        } else {
            attempt.follow()
        }
    })
}
