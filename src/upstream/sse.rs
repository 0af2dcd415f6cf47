//! The legacy HTTP+SSE client transport (protocol 2024-11-05), which rmcp no longer ships:
//! `GET` the SSE endpoint, whose first `endpoint` event names where to `POST` messages;
//! the server's messages arrive as `message` events on the same stream.

use std::{collections::BTreeMap, pin::Pin};

use futures::{Sink, Stream, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use sse_stream::SseStream;

/// Messages to the server.
pub(super) type Outgoing = Pin<Box<dyn Sink<ClientJsonRpcMessage, Error = reqwest::Error> + Send>>;
/// Messages from the server.
pub(super) type Incoming = Pin<Box<dyn Stream<Item = ServerJsonRpcMessage> + Send>>;

/// Opens the event stream and waits for the `endpoint` event.
pub(super) async fn connect(
    upstream: &str,
    url: &str,
    headers: &BTreeMap<String, String>,
    max_bytes: usize,
) -> Result<(Outgoing, Incoming), String> {
    let headers = super::client::header_map(headers)?;
    let headers: reqwest::header::HeaderMap = headers.into_iter().collect();
    let client = reqwest::Client::new();
    let response = client
        .get(url)
        .headers(headers.clone())
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("GET {url}: {e}"))?;
    let mut events =
        SseStream::from_bytes_stream(capped(upstream, response.bytes_stream(), max_bytes));
    let endpoint = loop {
        match events.next().await {
            Some(Ok(event)) if event.event.as_deref() == Some("endpoint") => {
                let path = event.data.unwrap_or_default();
                let base = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
                break base
                    .join(path.trim())
                    .map_err(|e| format!("endpoint event \"{path}\": {e}"))?;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("reading the event stream of {url}: {e}")),
            None => {
                return Err(format!(
                    "{url} closed its event stream before naming an endpoint"
                ));
            }
        }
    };
    let upstream = upstream.to_string();
    let incoming = events.filter_map(move |event| {
        let message = match event {
            Ok(event) if matches!(event.event.as_deref(), None | Some("message")) => {
                event.data.and_then(|data| {
                    let data = if data.len() > max_bytes {
                        // Answered with the same error as over stdio, never passed on.
                        let mut dropped = super::wire::Dropping::default();
                        dropped.take(data.as_bytes());
                        std::borrow::Cow::Owned(super::wire::too_large(
                            &upstream, &dropped, max_bytes,
                        ))
                    } else {
                        super::wire::admit(&upstream, data.as_bytes())
                    };
                    serde_json::from_slice::<ServerJsonRpcMessage>(&data).ok()
                })
            }
            _ => None,
        };
        std::future::ready(message)
    });
    let outgoing = futures::sink::unfold(
        (client, endpoint, headers),
        |(client, endpoint, headers), message: ClientJsonRpcMessage| async move {
            client
                .post(endpoint.clone())
                .headers(headers.clone())
                .json(&message)
                .send()
                .await?
                .error_for_status()?;
            Ok::<_, reqwest::Error>((client, endpoint, headers))
        },
    );
    Ok((Box::pin(outgoing), Box::pin(incoming)))
}

/// The event stream's bytes, ended once one event passes four times `max_bytes`:
/// sse-stream holds an event whole before it yields it, so one endless event would grow
/// this process without bound. Below that, an event past `max_bytes` is answered with the
/// cap's error and the stream goes on; past it, the stream reads as closed by the server:
/// its pending calls fail, and the upstream reconnects.
fn capped<S, B, E>(
    upstream: &str,
    bytes: S,
    max_bytes: usize,
) -> impl Stream<Item = Result<B, E>> + use<S, B, E>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    let limit = max_bytes.saturating_mul(4).saturating_add(64 << 10);
    let upstream = upstream.to_string();
    let mut in_event = 0usize;
    let mut last = 0u8;
    bytes.take_while(move |chunk| {
        let keep = match chunk {
            Ok(chunk) => {
                for &byte in chunk.as_ref() {
                    // A blank line ends an event ("\n\n"; "\r\n\r\n" ends in "\n\n" too
                    // once the "\r"s are skipped).
                    if byte == b'\r' {
                        continue;
                    }
                    in_event = if byte == b'\n' && last == b'\n' { 0 } else { in_event + 1 };
                    last = byte;
                }
                in_event <= limit
            }
            Err(_) => true,
        };
        if !keep {
            tracing::warn!(
                upstream = %upstream,
                "an event of the upstream's SSE stream passed {} KiB (4 x codemode.upstream.maxResultKiB); the stream was closed",
                limit >> 10
            );
        }
        std::future::ready(keep)
    })
}
